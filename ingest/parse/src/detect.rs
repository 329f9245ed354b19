//! Format detection from content, file extension and declared content type.

use crate::common::strip_bom;
use crate::encoding::decode_text;
use crate::image::sniff_image;
use crate::{DocFormat, ImageFormat, ParseError, docx};

/// How much of the file is inspected when guessing whether unknown content is text.
const SNIFF_LEN: usize = 8192;

/// Extensions of formats we know we cannot read, rejected even if the bytes happen to
/// look like text, so that e.g. an RTF or SVG upload is not indexed as markup soup.
const UNSUPPORTED_EXTENSIONS: &[&str] = &[
    "doc", "docm", "dot", "dotx", "odt", "ott", "rtf", "xls", "xlsx", "xlsm", "ods", "ppt", "pptx",
    "odp", "key", "pages", "numbers", "epub", "mobi", "azw3", "zip", "gz", "tgz", "bz2", "xz",
    "7z", "rar", "tar", "jar", "gif", "svg", "ico", "heic", "psd", "ai", "eps", "ps", "mp3", "wav",
    "ogg", "flac", "m4a", "mp4", "mov", "avi", "mkv", "webm", "exe", "dll", "so", "dylib", "bin",
    "iso", "dmg", "apk", "ttf", "otf", "woff", "woff2", "sqlite", "db", "class", "o", "a", "wasm",
];

/// Detects the format of an upload.
///
/// Content wins over the name: a PDF magic number (`%PDF-`), an image signature (PNG,
/// JPEG, TIFF, WebP, BMP), a ZIP archive containing `word/document.xml` (DOCX), or a
/// leading `<!doctype html` / `<html` / `<head` / `<body` (after whitespace and a BOM)
/// decides. Otherwise the extension (`.txt .text .md .markdown .html .htm .pdf .csv .tsv
/// .docx .png .jpg .jpeg .tif .tiff .webp .bmp`, case-insensitive) decides, even when the
/// bytes do not match it (so that a broken `.docx` is reported as such by [`crate::parse`]
/// and a broken `.png` by the OCR stage); when it is
/// missing or unknown, `content_type` (e.g. `"text/markdown"`) is used as a hint, and finally
/// content that [`decode_text`] accepts (UTF-8, UTF-16 with BOM, GBK, Big5, …) is plain text.
/// Known office, image, archive and binary formats, and binary content under an unknown
/// extension, are [`ParseError::Unsupported`].
pub fn detect_format(
    file_name: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<DocFormat, ParseError> {
    if let Some(format) = sniff(bytes) {
        return Ok(format);
    }
    let ext = extension(file_name);
    if let Some(ext) = &ext {
        if let Some(format) = format_for_extension(ext) {
            return Ok(format);
        }
        if UNSUPPORTED_EXTENSIONS.contains(&ext.as_str()) {
            return Err(ParseError::Unsupported {
                detail: format!("{file_name:?}: .{ext} files are not supported{SUPPORTED}"),
            });
        }
    }
    let mime = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty() && m != "application/octet-stream");
    if let Some(mime) = &mime {
        if let Some(format) = format_for_mime(mime) {
            return Ok(format);
        }
        if !mime_may_be_text(mime) {
            return Err(ParseError::Unsupported {
                detail: format!("{file_name:?}: content type {mime} is not supported{SUPPORTED}"),
            });
        }
    }
    if looks_like_text(bytes) {
        return Ok(DocFormat::Text);
    }
    let seen = match (&ext, &mime) {
        (Some(ext), _) => format!("{file_name:?} (.{ext})"),
        (None, Some(mime)) => format!("{file_name:?} ({mime})"),
        (None, None) => format!("{file_name:?}"),
    };
    Err(ParseError::Unsupported {
        detail: format!("{seen} contains binary data{SUPPORTED}"),
    })
}

const SUPPORTED: &str = "; supported are plain text, Markdown, HTML, CSV/TSV, Word (.docx), PDF and images (PNG, JPEG, TIFF, WebP, BMP)";

/// Recognises formats by their first bytes.
fn sniff(bytes: &[u8]) -> Option<DocFormat> {
    if let Some(image) = sniff_image(bytes) {
        return Some(DocFormat::Image(image));
    }
    let head = strip_bom(bytes).trim_ascii_start();
    if head.starts_with(b"%PDF-") {
        return Some(DocFormat::Pdf);
    }
    if docx::is_docx(bytes) {
        return Some(DocFormat::Docx);
    }
    for tag in [&b"<!doctype html"[..], b"<html", b"<head", b"<body"] {
        let Some(prefix) = head.get(..tag.len()) else {
            continue;
        };
        // The tag name must end here, so "<header>" or "<htmlfoo>" do not count.
        let delimited = head
            .get(tag.len())
            .is_none_or(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/');
        if prefix.eq_ignore_ascii_case(tag) && delimited {
            return Some(DocFormat::Html);
        }
    }
    None
}

/// The lower-cased extension of the last path component, if any.
fn extension(file_name: &str) -> Option<String> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let (stem, ext) = base.rsplit_once('.')?;
    // A dotfile such as ".bashrc" has a name, not an extension.
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

fn format_for_extension(ext: &str) -> Option<DocFormat> {
    match ext {
        "txt" | "text" => Some(DocFormat::Text),
        "md" | "markdown" => Some(DocFormat::Markdown),
        "html" | "htm" => Some(DocFormat::Html),
        "pdf" => Some(DocFormat::Pdf),
        "csv" => Some(DocFormat::Csv),
        "tsv" => Some(DocFormat::Tsv),
        "docx" => Some(DocFormat::Docx),
        "png" => Some(DocFormat::Image(ImageFormat::Png)),
        "jpg" | "jpeg" | "jpe" => Some(DocFormat::Image(ImageFormat::Jpeg)),
        "tif" | "tiff" => Some(DocFormat::Image(ImageFormat::Tiff)),
        "webp" => Some(DocFormat::Image(ImageFormat::Webp)),
        "bmp" => Some(DocFormat::Image(ImageFormat::Bmp)),
        _ => None,
    }
}

fn format_for_mime(mime: &str) -> Option<DocFormat> {
    match mime {
        "text/plain" => Some(DocFormat::Text),
        "text/markdown" | "text/x-markdown" => Some(DocFormat::Markdown),
        "text/html" | "application/xhtml+xml" => Some(DocFormat::Html),
        "application/pdf" | "application/x-pdf" => Some(DocFormat::Pdf),
        "text/csv" | "application/csv" => Some(DocFormat::Csv),
        "text/tab-separated-values" => Some(DocFormat::Tsv),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
            Some(DocFormat::Docx)
        }
        "image/png" => Some(DocFormat::Image(ImageFormat::Png)),
        "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(DocFormat::Image(ImageFormat::Jpeg)),
        "image/tiff" => Some(DocFormat::Image(ImageFormat::Tiff)),
        "image/webp" => Some(DocFormat::Image(ImageFormat::Webp)),
        "image/bmp" | "image/x-bmp" | "image/x-ms-bmp" => Some(DocFormat::Image(ImageFormat::Bmp)),
        _ => None,
    }
}

/// Content types whose payload is readable text (source, data, logs); anything else that is
/// declared explicitly (images, office documents, archives) is refused outright.
fn mime_may_be_text(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/json"
                | "application/xml"
                | "application/yaml"
                | "application/x-yaml"
                | "application/toml"
                | "application/javascript"
                | "application/x-sh"
        )
}

/// Whether the start of the file is text that [`crate::parse`] would accept: the same
/// decision function on a sample (whose cut-off last character the decoder tolerates).
fn looks_like_text(bytes: &[u8]) -> bool {
    decode_text(bytes.get(..SNIFF_LEN).unwrap_or(bytes)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{make_docx, make_zip, xorshift_bytes};

    fn detect(name: &str, ct: Option<&str>, bytes: &[u8]) -> Result<DocFormat, ParseError> {
        detect_format(name, ct, bytes)
    }

    #[test]
    fn csv_tsv_and_docx_extensions() {
        assert_eq!(detect("a.CSV", None, b"a,b").unwrap(), DocFormat::Csv);
        assert_eq!(detect("a.tsv", None, b"a\tb").unwrap(), DocFormat::Tsv);
        // The extension decides even for bytes that are not a ZIP: parse then reports a
        // broken Word document rather than an unsupported type.
        let junk = xorshift_bytes(300, 1);
        assert_eq!(detect("Report.DOCX", None, &junk).unwrap(), DocFormat::Docx);
        let err = crate::parse(DocFormat::Docx, &junk).unwrap_err();
        assert_eq!(err.code(), "invalid_docx");
        assert!(err.to_string().contains("not a ZIP archive"), "{err}");
    }

    #[test]
    fn docx_content_beats_name() {
        let docx = make_docx("<w:p><w:r><w:t>x</w:t></w:r></w:p>", None);
        for name in ["a.docx", "upload", "notes.txt", "x.zip", "y.md"] {
            assert_eq!(
                detect(name, None, &docx).unwrap(),
                DocFormat::Docx,
                "{name}"
            );
        }
    }

    #[test]
    fn legacy_encoded_text_under_unknown_names_is_text() {
        let chinese = "这是一个没有扩展名的中文文本文件，用国标码保存在一台旧电脑上。".repeat(20);
        let (gbk, _, _) = encoding_rs::GBK.encode(&chinese);
        assert_eq!(detect("README", None, &gbk).unwrap(), DocFormat::Text);
        let traditional =
            "這是一個沒有副檔名的中文文字檔，用大五碼儲存在一台舊電腦上。".repeat(400);
        let (big5, _, _) = encoding_rs::BIG5.encode(&traditional);
        // Longer than the sniffed prefix, so the sample is cut mid-character.
        assert!(big5.len() > SNIFF_LEN);
        assert_eq!(detect("notes", None, &big5).unwrap(), DocFormat::Text);
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend("UTF-16 文本".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(detect("log", None, &utf16).unwrap(), DocFormat::Text);
        let err = detect("blob", None, &xorshift_bytes(4096, 3)).unwrap_err();
        assert_eq!(err.code(), "unsupported_type");
    }

    #[test]
    fn extensions_case_insensitive() {
        for (name, want) in [
            ("a.txt", DocFormat::Text),
            ("a.TEXT", DocFormat::Text),
            ("dir.v2/README.Md", DocFormat::Markdown),
            ("a.markdown", DocFormat::Markdown),
            ("a.HTM", DocFormat::Html),
            ("a.html", DocFormat::Html),
            ("C:\\docs\\a.PDF", DocFormat::Pdf),
        ] {
            assert_eq!(detect(name, None, b"plain words").unwrap(), want, "{name}");
        }
    }

    #[test]
    fn images_by_signature_extension_and_content_type() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        for name in ["scan.png", "scan", "scan.txt", "scan.jpg"] {
            assert_eq!(
                detect(name, None, png).unwrap(),
                DocFormat::Image(ImageFormat::Png),
                "{name}"
            );
        }
        let mut bmp = b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        bmp.extend([0; 32]);
        for (bytes, want) in [
            (&b"\xFF\xD8\xFF\xE0\0\x10JFIF"[..], ImageFormat::Jpeg),
            (b"II*\0\x08\0\0\0", ImageFormat::Tiff),
            (b"MM\0*\0\0\0\x08", ImageFormat::Tiff),
            (b"RIFF\x24\0\0\0WEBPVP8 ", ImageFormat::Webp),
            (&bmp, ImageFormat::Bmp),
        ] {
            assert_eq!(
                detect("upload", None, bytes).unwrap(),
                DocFormat::Image(want)
            );
        }
        // Text that happens to start with "BM" is text.
        assert_eq!(
            detect("notes", None, b"BMW and Mercedes sales figures").unwrap(),
            DocFormat::Text
        );
        for (name, want) in [
            ("a.PNG", ImageFormat::Png),
            ("a.jpeg", ImageFormat::Jpeg),
            ("a.JPG", ImageFormat::Jpeg),
            ("a.tif", ImageFormat::Tiff),
            ("a.webp", ImageFormat::Webp),
            ("a.bmp", ImageFormat::Bmp),
        ] {
            // The extension decides for damaged bytes, so OCR can say what is wrong.
            assert_eq!(detect(name, None, b"").unwrap(), DocFormat::Image(want));
        }
        assert_eq!(
            detect("upload", Some("image/jpeg"), b"junk").unwrap(),
            DocFormat::Image(ImageFormat::Jpeg)
        );
    }

    #[test]
    fn content_beats_extension() {
        let html = b"\xEF\xBB\xBF  \n<!DOCTYPE HTML>\n<html><body>x</body></html>";
        assert_eq!(detect("notes.txt", None, html).unwrap(), DocFormat::Html);
        assert_eq!(detect("a.md", None, b"<body>x").unwrap(), DocFormat::Html);
        assert_eq!(detect("a.md", None, b"<HEAD>").unwrap(), DocFormat::Html);
        assert_eq!(detect("a.md", None, b"<html").unwrap(), DocFormat::Html);
        assert_eq!(
            detect("x.md", None, b"%PDF-1.7\n...").unwrap(),
            DocFormat::Pdf
        );
        assert_eq!(
            detect("report.docx", Some("text/plain"), b"%PDF-1.4").unwrap(),
            DocFormat::Pdf
        );
        // Not HTML: the tag name continues.
        assert_eq!(
            detect("a.md", None, b"<header>").unwrap(),
            DocFormat::Markdown
        );
    }

    #[test]
    fn content_type_is_a_hint_for_unknown_extensions() {
        let md = Some("text/markdown; charset=utf-8");
        assert_eq!(detect("upload", md, b"# T").unwrap(), DocFormat::Markdown);
        assert_eq!(
            detect("x.unknown", md, b"# T").unwrap(),
            DocFormat::Markdown
        );
        assert_eq!(detect("x.txt", md, b"# T").unwrap(), DocFormat::Text);
        assert_eq!(
            detect("blob", Some("application/pdf"), b"...").unwrap(),
            DocFormat::Pdf
        );
        assert_eq!(
            detect("README", None, b"just text").unwrap(),
            DocFormat::Text
        );
        assert_eq!(
            detect("data", Some("text/csv"), b"a,b\n1,2").unwrap(),
            DocFormat::Csv
        );
        assert_eq!(
            detect("data", Some("text/tab-separated-values"), b"a\tb").unwrap(),
            DocFormat::Tsv
        );
        assert_eq!(
            detect(
                "upload",
                Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
                b"junk"
            )
            .unwrap(),
            DocFormat::Docx
        );
        assert_eq!(
            detect("photo", Some("image/png"), b"abc").unwrap(),
            DocFormat::Image(ImageFormat::Png)
        );
        let err = detect("photo", Some("image/gif"), b"abc").unwrap_err();
        assert!(err.to_string().contains("image/gif"), "{err}");
    }

    #[test]
    fn unsupported_types_name_what_was_seen() {
        let err = detect("report.doc", None, b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1").unwrap_err();
        assert!(matches!(err, ParseError::Unsupported { .. }));
        assert_eq!(err.code(), "unsupported_type");
        assert!(err.to_string().contains(".doc"), "{err}");
        assert!(err.to_string().contains("Word (.docx)"), "{err}");
        let err = detect("Report.DOCM", None, b"hello").unwrap_err();
        assert!(matches!(err, ParseError::Unsupported { .. }));
        // A ZIP without word/document.xml is not sniffed as DOCX.
        let xlsx = make_zip(&[("xl/workbook.xml", b"<workbook/>")]);
        let err = detect("sheet.xlsx", None, &xlsx).unwrap_err();
        assert!(err.to_string().contains(".xlsx"), "{err}");
        let err = detect("archive", None, &xlsx).unwrap_err();
        assert!(err.to_string().contains("binary data"), "{err}");
        let err = detect("image.gif", None, b"GIF89a").unwrap_err();
        assert!(err.to_string().contains(".gif"), "{err}");
        let err = detect("blob.xyz", None, b"abc\0\x01\x02").unwrap_err();
        assert!(err.to_string().contains("blob.xyz"), "{err}");
        let err = detect(
            "blob",
            Some("application/octet-stream"),
            b"\x7fELF\x02\x01\x01\0\0\0",
        )
        .unwrap_err();
        assert!(matches!(err, ParseError::Unsupported { .. }));
    }
}
