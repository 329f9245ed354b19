#!/usr/bin/env bash
# Assembles a test corpus from Debian packages.
#
#   deploy/dev/corpus.sh [DIR]          the benchmark corpus (default /tmp/zhiku-corpus): chapters
#                                       1-4 of the Debian Reference in English and Chinese (HTML)
#                                       and the Debian Edu manual in Chinese (PDF)
#   deploy/dev/corpus.sh --faq [DIR]    the retrieval-quality corpus (default /tmp/zhiku-eval): the
#                                       Debian FAQ in English (DIR/en/) and Simplified Chinese
#                                       (DIR/zh-cn/), one HTML file per chapter
#
# The FAQ corpus is deliberately asymmetric, so that a question in one language can have
# its only answer in the other: the chapters `customizing` and `support` are kept in
# Chinese only, `compatibility` and `kernel` in English only; every other chapter is in
# both. The table of contents (index.*.html) is left out: it repeats every section title
# without answering any. Document ids are paths under DIR, e.g. `en/pkgtools.en.html`;
# deploy/eval/debian-faq.jsonl depends on this layout.
#
# Prints DIR on stdout.
set -euo pipefail

faq=false
if [ "${1:-}" = "--faq" ]; then
  faq=true
  shift
fi

# Installs the Debian packages given that are not installed yet.
need_packages() {
  local missing=() p sudo=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

if $faq; then
  dir=${1:-/tmp/zhiku-eval}
  need_packages debian-faq debian-faq-zh-cn
  src=/usr/share/doc/debian/FAQ
  # Only the two language folders are replaced, so a stale chapter never lingers.
  rm -rf "$dir/en" "$dir/zh-cn"
  mkdir -p "$dir/en" "$dir/zh-cn"
  for f in "$src"/*.en.html; do
    case $(basename "$f" .en.html) in index | customizing | support) continue ;; esac
    cp "$f" "$dir/en/"
  done
  for f in "$src"/zh-cn/*.zh-cn.html; do
    case $(basename "$f" .zh-cn.html) in index | compatibility | kernel) continue ;; esac
    cp "$f" "$dir/zh-cn/"
  done
else
  dir=${1:-/tmp/zhiku-corpus}
  need_packages debian-reference-en debian-reference-zh-cn debian-edu-doc-zh-cn
  mkdir -p "$dir"
  cp /usr/share/debian-reference/ch0{1,2,3,4}.{en,zh-cn}.html "$dir/"
  cp /usr/share/doc/debian-edu-doc-zh-cn/debian-edu-bookworm-manual.pdf "$dir/"
fi
du -sh "$dir" >&2
echo "$dir"
