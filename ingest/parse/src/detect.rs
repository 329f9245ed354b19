//! Format detection from content, file extension and declared content type.

use crate::common::strip_bom;
use crate::{DocFormat, ParseError};

/// How much of the file is inspected when guessing whether unknown content is text.
const SNIFF_LEN: usize = 8192;

/// Extensions of formats we know we cannot read, rejected even if the bytes happen to
/// look like text, so that e.g. an RTF or SVG upload is not indexed as markup soup.
const UNSUPPORTED_EXTENSIONS: &[&str] = &[
    "doc", "docx", "docm", "dot", "dotx", "odt", "ott", "rtf", "xls", "xlsx", "xlsm", "ods", "ppt",
    "pptx", "odp", "key", "pages", "numbers", "epub", "mobi", "azw3", "zip", "gz", "tgz", "bz2",
    "xz", "7z", "rar", "tar", "jar", "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp",
    "svg", "ico", "heic", "psd", "ai", "eps", "ps", "mp3", "wav", "ogg", "flac", "m4a", "mp4",
    "mov", "avi", "mkv", "webm", "exe", "dll", "so", "dylib", "bin", "iso", "dmg", "apk", "ttf",
    "otf", "woff", "woff2", "sqlite", "db", "class", "o", "a", "wasm",
];

/// Detects the format of an upload.
///
/// Content wins over the name: a PDF magic number (`%PDF-`) or a leading
/// `<!doctype html` / `<html` / `<head` / `<body` (after whitespace and a BOM) decides.
/// Otherwise the extension (`.txt .text .md .markdown .html .htm .pdf`, case-insensitive)
/// decides; when it is missing or unknown, `content_type` (e.g. `"text/markdown"`) is used as
/// a hint, and finally content that looks like UTF-8 text is treated as plain text.
/// Known office, image, archive and binary formats, and binary content (NUL bytes, invalid
/// UTF-8) under an unknown extension, are [`ParseError::Unsupported`].
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

const SUPPORTED: &str = "; supported are plain text, Markdown, HTML and PDF";

/// Recognises formats by their first bytes.
fn sniff(bytes: &[u8]) -> Option<DocFormat> {
    let head = strip_bom(bytes).trim_ascii_start();
    if head.starts_with(b"%PDF-") {
        return Some(DocFormat::Pdf);
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
        _ => None,
    }
}

fn format_for_mime(mime: &str) -> Option<DocFormat> {
    match mime {
        "text/plain" => Some(DocFormat::Text),
        "text/markdown" | "text/x-markdown" => Some(DocFormat::Markdown),
        "text/html" | "application/xhtml+xml" => Some(DocFormat::Html),
        "application/pdf" | "application/x-pdf" => Some(DocFormat::Pdf),
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

/// Whether the start of the file is UTF-8 text without NUL bytes.
fn looks_like_text(bytes: &[u8]) -> bool {
    let text = strip_bom(bytes);
    let sample = &text[..text.len().min(SNIFF_LEN)];
    if sample.contains(&0) {
        return false;
    }
    match std::str::from_utf8(sample) {
        Ok(_) => true,
        // A multi-byte character cut off by the sample boundary is not an error.
        Err(e) => e.error_len().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(name: &str, ct: Option<&str>, bytes: &[u8]) -> Result<DocFormat, ParseError> {
        detect_format(name, ct, bytes)
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
            detect("data.csv", Some("text/csv"), b"a,b\n1,2").unwrap(),
            DocFormat::Text
        );
        let err = detect("photo", Some("image/png"), b"abc").unwrap_err();
        assert!(err.to_string().contains("image/png"), "{err}");
    }

    #[test]
    fn unsupported_types_name_what_was_seen() {
        let err = detect("report.docx", None, b"PK\x03\x04\x14\0\x06\0").unwrap_err();
        assert!(matches!(err, ParseError::Unsupported { .. }));
        assert_eq!(err.code(), "unsupported_type");
        assert!(err.to_string().contains(".docx"), "{err}");
        let err = detect("Report.DOCX", None, b"hello").unwrap_err();
        assert!(matches!(err, ParseError::Unsupported { .. }));
        let err = detect("image.png", None, b"\x89PNG\r\n\x1a\n").unwrap_err();
        assert!(err.to_string().contains(".png"), "{err}");
        let err = detect("blob.xyz", None, b"abc\0\x01\x02").unwrap_err();
        assert!(err.to_string().contains("blob.xyz"), "{err}");
        let err = detect("blob", Some("application/octet-stream"), b"\xff\xfe\xfd").unwrap_err();
        assert!(matches!(err, ParseError::Unsupported { .. }));
    }
}
