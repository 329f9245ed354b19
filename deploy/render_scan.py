"""Renders text as scanned pages: for the OCR tests and the scanned benchmark corpus.

As a program it reads a JSON request on stdin and writes one file to stdout:

  {"pages": [["line", ...], ...]            lines per page, or
   "paragraphs": ["text", ...], "max_pages": N   text to typeset (wrapped; A4 implied),
   "format": "PNG" | "JPEG" | "TIFF" | "WEBP" | "BMP" | "PDF",
   "size": 40, "width": 1700, "a4": false, "noise": false}

A page is `width` pixels wide and as tall as its lines need, or A4 at 300 DPI (2480 x 3508)
with "a4". PDF puts each page, as an image, on its own page of an image-only PDF at 300
DPI; TIFF keeps several pages; the other formats take the first page. "noise" adds a
slight skew and speckles, as from a scanner. A request {"zeros": N} writes N zero bytes
compressed with zlib instead (image data that is small on disk and slow to draw).

Needs Pillow (Debian: python3-pil) and WenQuanYi Micro Hei (fonts-wqy-microhei), both
installed by deploy/setup.sh.
"""
import io
import json
import random
import sys
import zlib

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
A4 = (2480, 3508)


def zeros(n):
    out = zlib.compressobj(1)
    block = bytes(1 << 23)
    parts = []
    while n > 0:
        take = min(n, len(block))
        parts.append(out.compress(block[:take]))
        n -= take
    parts.append(out.flush())
    return b"".join(parts)


def _is_cjk(c):
    return "\u2e80" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\uff00" <= c <= "\uffef"


def wrap(text, font, width):
    """Lines of at most `width` pixels: Latin text breaks between words, Chinese anywhere."""
    tokens, word = [], ""
    for c in text:
        if _is_cjk(c):
            if word:
                tokens.append(word)
                word = ""
            tokens.append(c)
        elif c.isspace():
            if word:
                tokens.append(word)
                word = ""
            tokens.append(" ")
        else:
            word += c
    if word:
        tokens.append(word)
    lines, line = [], ""
    for token in tokens:
        candidate = line + token
        if line and font.getlength(candidate.rstrip()) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line = candidate
    if line.strip():
        lines.append(line.rstrip())
    return lines


def layout(paragraphs, font, width, per_page, max_pages):
    """Pages of lines, paragraphs separated by a blank line."""
    pages, page = [], []
    for paragraph in paragraphs:
        for line in wrap(paragraph, font, width) + [""]:
            if len(page) == per_page:
                pages.append(page)
                if len(pages) == max_pages:
                    return pages
                page = []
            if line or page:
                page.append(line)
    if any(page):
        pages.append(page)
    return pages[:max_pages]


def metrics(size):
    """Margin and line height for a font size."""
    return size * 2, size * 3 // 2


def a4_pages(paragraphs, size=40, max_pages=1):
    """`paragraphs` typeset on A4 pages at 300 DPI: the lines of each page."""
    from PIL import ImageFont

    font = ImageFont.truetype(FONT, size)
    margin, line_height = metrics(size)
    per_page = (A4[1] - 2 * margin) // line_height
    return layout(paragraphs, font, A4[0] - 2 * margin, per_page, max_pages)


def render(request):
    from PIL import Image, ImageDraw, ImageFont

    size = request.get("size", 40)
    margin, line_height = metrics(size)
    font = ImageFont.truetype(FONT, size)
    a4 = request.get("a4") or "paragraphs" in request
    if "paragraphs" in request:
        pages = a4_pages(request["paragraphs"], size, request.get("max_pages", 1))
    else:
        pages = request["pages"]
    rng = random.Random(7)
    images = []
    for lines in pages:
        if a4:
            w, h = A4
        else:
            w, h = request.get("width", 1700), 2 * margin + line_height * max(len(lines), 1)
        image = Image.new("L", (w, h), 255)
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(lines):
            draw.text((margin, margin + i * line_height), line, font=font, fill=0)
        if request.get("noise"):
            image = image.rotate(rng.uniform(-0.6, 0.6), fillcolor=255, resample=Image.BICUBIC)
            pixels = image.load()
            for _ in range(w * h // 400):
                pixels[rng.randrange(w), rng.randrange(h)] = rng.randrange(0, 160)
        images.append(image)
    out = io.BytesIO()
    fmt = request["format"]
    if fmt == "PDF":
        images[0].save(out, "PDF", resolution=300.0, save_all=True, append_images=images[1:])
    elif fmt == "TIFF" and len(images) > 1:
        images[0].save(out, "TIFF", dpi=(300, 300), save_all=True, append_images=images[1:])
    else:
        images[0].save(out, fmt, dpi=(300, 300), **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def main():
    request = json.load(sys.stdin)
    data = zeros(request["zeros"]) if "zeros" in request else render(request)
    sys.stdout.buffer.write(data)


if __name__ == "__main__":
    main()
