#!/usr/bin/env bash
# Generates the scanned benchmark corpus for `zhiku bench ingest`: chapters of the Debian
# FAQ in English and Simplified Chinese (Debian packages debian-faq, debian-faq-zh-cn),
# typeset on A4 pages at 300 DPI in WenQuanYi Micro Hei and rasterized with a slight skew
# and speckles, as a scanner would deliver them:
#
#   4 image-only PDFs of 10 pages (2 English, 2 Chinese)               40 pages
#   16 single-page images, PNG, JPEG, TIFF, WebP and BMP in turn         16 pages
#   (8 English, 8 Chinese)
#
#   deploy/dev/corpus-scanned.sh [DIR]      (default /tmp/zhiku-scanned)
#
# Deterministic for a given set of packages. Needs python3-pil and fonts-wqy-microhei
# (deploy/setup.sh). Prints DIR on stdout.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${1:-/tmp/zhiku-scanned}
# Debian's python3, which has python3-pil; another python3 on PATH may not.
python=${ZHIKU_PYTHON:-/usr/bin/python3}
[ -x "$python" ] || python=python3

faq=$(mktemp -d)
trap 'rm -rf "$faq"' EXIT
"$root/deploy/dev/corpus.sh" --faq "$faq" >/dev/null
rm -rf "$dir"
mkdir -p "$dir"
"$python" - "$faq" "$dir" "$root/tests/fixtures" <<'PY'
import glob
import html.parser
import os
import sys

faq, out, fixtures = sys.argv[1:]
sys.path.insert(0, fixtures)
import render_scan  # noqa: E402


class Text(html.parser.HTMLParser):
    """Paragraphs of a FAQ chapter: headings, paragraphs and list items."""

    BLOCKS = {"h1", "h2", "h3", "h4", "p", "li", "dt", "dd"}

    def __init__(self):
        super().__init__()
        self.paragraphs, self.current, self.depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.flush()
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.flush()
            self.depth = max(0, self.depth - 1)

    def handle_data(self, data):
        if self.depth:
            self.current.append(data)

    def flush(self):
        text = " ".join("".join(self.current).split())
        if len(text) > 1:
            self.paragraphs.append(text)
        self.current = []


def paragraphs(lang):
    found = []
    for path in sorted(glob.glob(os.path.join(faq, lang, "*.html"))):
        parser = Text()
        with open(path, encoding="utf-8") as f:
            parser.feed(f.read())
        parser.flush()
        found.extend(parser.paragraphs)
    return found


def write(name, pages, fmt):
    request = {"pages": pages, "a4": True, "noise": True, "format": fmt}
    with open(os.path.join(out, name), "wb") as f:
        f.write(render_scan.render(request))


formats = ["PNG", "JPEG", "TIFF", "WEBP", "BMP"]
for lang, tag in [("en", "en"), ("zh-cn", "zh")]:
    # The FAQ typesets to about 50 A4 pages per language: each file gets pages of its own.
    pages = render_scan.a4_pages(paragraphs(lang), max_pages=28)
    assert len(pages) == 28, f"{lang}: only {len(pages)} pages of text"
    write(f"{tag}-faq-1.pdf", pages[0:10], "PDF")
    write(f"{tag}-faq-2.pdf", pages[10:20], "PDF")
    for i, page in enumerate(pages[20:28]):
        fmt = formats[(i + (tag == "zh") * 3) % len(formats)]
        write(f"{tag}-page-{i + 1}.{fmt.lower()}", [page], fmt)
PY
du -sh "$dir" >&2
echo "$dir"
