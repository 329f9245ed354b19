//! Documents built by hand for the tests (PDFs, scans), so that no test needs a document
//! tool beyond what setup installs.

use super::*;

/// A small valid PDF with one page per string (Helvetica, ASCII text), built by hand so
/// tests need no PDF tool.
pub fn simple_pdf(pages: &[&str]) -> Vec<u8> {
    let pages: Vec<PdfPage> = pages.iter().map(|text| PdfPage::Text(text)).collect();
    pdf(&pages)
}

/// One page of [`pdf`].
pub enum PdfPage<'a> {
    /// A text layer: lines of ASCII text in Helvetica on a Letter page.
    Text(&'a str),
    /// A scanned page: one gray image filling a page of its size at 300 DPI, with no text.
    Image {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bits per pixel (8, or 1 for black and white).
        bits: u8,
        /// `DCTDecode` for JPEG bytes, `FlateDecode` for zlib-compressed pixels, `None`
        /// for raw pixels.
        filter: Option<&'a str>,
        /// The encoded image.
        data: &'a [u8],
    },
}

/// A valid PDF of text-layer and scanned pages, built by hand: the scans are what a
/// scanner's PDF holds, an image per page and nothing else.
pub fn pdf(pages: &[PdfPage]) -> Vec<u8> {
    // Objects: 1 catalog, 2 page tree, 3 font, then per page: page, content, [image].
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        Vec::new(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    let stream = |dict: String, data: &[u8]| pdf_stream(&dict, data);
    let mut kids = Vec::new();
    for page in pages {
        let id = objects.len() + 1;
        kids.push(format!("{id} 0 R"));
        match page {
            PdfPage::Text(text) => {
                objects.push(format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                    id + 1
                ).into_bytes());
                let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
                for line in text.lines() {
                    let escaped = line
                        .replace('\\', "\\\\")
                        .replace('(', "\\(")
                        .replace(')', "\\)");
                    content.push_str(&format!("({escaped}) Tj T*\n"));
                }
                content.push_str("ET");
                objects.push(stream(String::new(), content.as_bytes()));
            }
            PdfPage::Image {
                width,
                height,
                bits,
                filter,
                data,
            } => {
                let (w, h) = (
                    f64::from(*width) * 72.0 / 300.0,
                    f64::from(*height) * 72.0 / 300.0,
                );
                objects.push(format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w:.2} {h:.2}] /Resources << /XObject << /Im1 {} 0 R >> >> /Contents {} 0 R >>",
                    id + 2,
                    id + 1
                ).into_bytes());
                let content = format!("q {w:.2} 0 0 {h:.2} 0 0 cm /Im1 Do Q");
                objects.push(stream(String::new(), content.as_bytes()));
                let filter = filter.map(|f| format!(" /Filter /{f}")).unwrap_or_default();
                objects.push(stream(
                    format!(
                        "/Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray /BitsPerComponent {bits}{filter}"
                    ),
                    data,
                ));
            }
        }
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        kids.len()
    )
    .into_bytes();
    pdf_from_objects(&objects)
}

/// A PDF stream object: `dict`'s entries plus `/Length`, then `data`.
pub fn pdf_stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\nendstream");
    out
}

/// A PDF file of the given objects, numbered from 1 (object 1 is the catalog), with a
/// correct cross-reference table.
pub fn pdf_from_objects(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Debian's Python, which has Pillow from `python3-pil`; a `python3` earlier on `PATH`
/// (pyenv, a virtualenv) may not. `ZHIKU_PYTHON` overrides.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("ZHIKU_PYTHON") {
        return python.into();
    }
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("python3")
    }
}

/// Runs `tests/fixtures/render_scan.py` (Pillow and the WenQuanYi Micro Hei font, both installed
/// by deploy/setup.sh) with a JSON request and returns what it writes.
pub fn render(request: &Value) -> Vec<u8> {
    use std::io::Write;
    let script = workspace_root().join("tests/fixtures/render_scan.py");
    let mut child = Command::new(python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (deploy/setup.sh installs python3-pil)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let output = child.wait_with_output().expect("render_scan.py");
    assert!(
        output.status.success(),
        "render_scan.py failed (python3-pil and fonts-wqy-microhei installed? deploy/setup.sh): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Text rendered as a scanned image: one entry of `pages` per page, each a list of lines,
/// 40-pixel WenQuanYi Micro Hei (about 10 pt at 300 DPI), in `format` (`PNG`, `JPEG`,
/// `TIFF`, `WEBP`, `BMP`, or `PDF` for an image-only PDF).
pub fn scan(pages: &[&[&str]], format: &str) -> Vec<u8> {
    render(&serde_json::json!({ "pages": pages, "format": format }))
}

/// The size [`scan`] gives a page of `lines` lines.
pub fn scan_size(lines: usize) -> (u32, u32) {
    (1700, 2 * 80 + 60 * lines.max(1) as u32)
}
