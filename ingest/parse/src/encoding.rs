//! Decoding of text formats, whose encoding is almost never declared: uploads come from
//! Windows machines in China and Taiwan (GBK, Big5), Japan (Shift_JIS), editors that write
//! UTF-16, and everything else that is UTF-8.

use std::borrow::Cow;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, UTF_8};

use crate::ParseError;

/// How much of a non-UTF-8 file the detector sees. Its guess settles within a few KiB of
/// real prose; feeding megabytes would only cost time.
const DETECT_LEN: usize = 256 * 1024;

/// Decodes the bytes of a text file, detecting its encoding.
///
/// In order of precedence: a byte order mark (UTF-8, UTF-16LE, UTF-16BE); valid UTF-8,
/// also when only a few sequences are damaged (a truncated upload); otherwise the legacy
/// encoding that `chardetng` guesses (GBK/GB18030, Big5, Shift_JIS, EUC-KR, windows-125x, …).
/// Valid UTF-8 is returned without copying; the BOM is never part of the text.
///
/// Binary data is [`ParseError::NotText`]: NUL characters, more than a tiny share of
/// malformed sequences, or more than 1% control characters other than tab, line feed,
/// carriage return, form feed and escape.
pub fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    decode_with_hint(bytes, None)
}

/// [`decode_text`] for an HTML page: a `<meta charset>` in the first KiB takes the place of
/// the detector's guess when the bytes are not UTF-8.
pub(crate) fn decode_html(bytes: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    decode_with_hint(bytes, meta_charset(bytes))
}

fn decode_with_hint<'a>(
    bytes: &'a [u8],
    declared: Option<&'static Encoding>,
) -> Result<Cow<'a, str>, ParseError> {
    // A BOM is the strongest signal there is, and the only way UTF-16 is recognised: UTF-16
    // without one is indistinguishable from binary with many NUL bytes.
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let body = bytes.get(bom_len..).unwrap_or_default();
        let (text, errors) = decode_counting(encoding, body);
        return check(text, errors, encoding);
    }
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(ParseError::NotText {
            detail: format!("NUL byte at offset {pos}, this looks like binary data"),
        });
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return check(Cow::Borrowed(text), 0, UTF_8);
    }
    // UTF-8 with a few damaged or cut-off sequences is still UTF-8; legacy encodings are
    // almost never valid UTF-8 beyond the odd character, so many valid multi-byte characters
    // per error are evidence enough.
    let (lossy, errors) = decode_counting(UTF_8, bytes);
    let multibyte = lossy
        .chars()
        .filter(|&c| !c.is_ascii() && c != char::REPLACEMENT_CHARACTER)
        .count();
    if multibyte >= 4 * errors {
        return check(lossy, errors, UTF_8);
    }
    // A declared UTF-8 (or UTF-16, which HTML treats as UTF-8) was just shown to be wrong.
    let encoding = declared
        .map(Encoding::output_encoding)
        .filter(|e| *e != UTF_8 && e.is_ascii_compatible())
        .unwrap_or_else(|| guess(bytes));
    let (text, errors) = decode_counting(encoding, bytes);
    check(text, errors, encoding)
}

/// The legacy encoding chardetng finds most plausible. UTF-8 is excluded because the caller
/// has already ruled it out.
fn guess(bytes: &[u8]) -> &'static Encoding {
    let sample = bytes.get(..DETECT_LEN).unwrap_or(bytes);
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    detector.feed(sample, sample.len() == bytes.len());
    detector.guess(None, Utf8Detection::Deny)
}

/// Decodes with replacement and counts the malformed sequences, each of which became one
/// U+FFFD. A genuine U+FFFD in the input counts too, which only errs on the safe side.
fn decode_counting<'a>(encoding: &'static Encoding, bytes: &'a [u8]) -> (Cow<'a, str>, usize) {
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    let errors = if had_errors {
        text.chars()
            .filter(|&c| c == char::REPLACEMENT_CHARACTER)
            .count()
    } else {
        0
    };
    (text, errors)
}

/// Rejects decoded text that is really binary data.
fn check<'a>(
    text: Cow<'a, str>,
    errors: usize,
    encoding: &'static Encoding,
) -> Result<Cow<'a, str>, ParseError> {
    let mut chars = 0usize;
    let mut controls = 0usize;
    let mut first_control = None;
    for (pos, c) in text.char_indices() {
        chars += 1;
        if c == '\0' {
            return Err(ParseError::NotText {
                detail: format!(
                    "NUL character at offset {pos} (as {}), this looks like binary data",
                    encoding.name()
                ),
            });
        }
        if is_suspicious_control(c) {
            controls += 1;
            first_control.get_or_insert(pos);
        }
    }
    // A few errors are always allowed: one damaged UTF-8 character costs up to three, and
    // a sample or upload cut mid-character one more.
    if errors > 4 + chars / 200 {
        return Err(ParseError::NotText {
            detail: format!(
                "{errors} malformed byte sequences in {chars} characters even as the best \
                 guess {}",
                encoding.name()
            ),
        });
    }
    if controls * 100 > chars {
        return Err(ParseError::NotText {
            detail: format!(
                "{controls} control characters in {chars} characters (first at offset {}), \
                 this looks like binary data",
                first_control.unwrap_or_default()
            ),
        });
    }
    Ok(text)
}

/// Control characters that do not occur in text files. Form feed separates pages in old
/// text dumps, and escape starts the ANSI colour codes of captured terminal logs. C1 controls
/// count too: they are what undefined bytes of windows-1252 decode to.
fn is_suspicious_control(c: char) -> bool {
    match c {
        '\t' | '\n' | '\r' | '\x0c' | '\x1b' => false,
        _ => c.is_control(),
    }
}

/// The encoding named by a `<meta charset=…>` or `<meta http-equiv … content="…; charset=…">`
/// near the start of an HTML page. A simplified form of the HTML prescan: attribute syntax
/// is not checked, which is harmless because the result is only used for non-UTF-8 bytes.
fn meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = bytes.get(..1024).unwrap_or(bytes).to_ascii_lowercase();
    let mut rest = head.as_slice();
    while let Some(start) = find(rest, b"<meta") {
        let tag = &rest[start..];
        let tag = &tag[..find(tag, b">").unwrap_or(tag.len())];
        if let Some(at) = find(tag, b"charset") {
            let value = tag[at + b"charset".len()..].trim_ascii_start();
            if let Some(value) = value.strip_prefix(b"=") {
                let value = value.trim_ascii_start();
                let value = value
                    .strip_prefix(b"\"")
                    .or_else(|| value.strip_prefix(b"'"))
                    .unwrap_or(value);
                let end = value
                    .iter()
                    .position(|&b| {
                        matches!(b, b'"' | b'\'' | b';' | b'/') || b.is_ascii_whitespace()
                    })
                    .unwrap_or(value.len());
                if let Some(encoding) = Encoding::for_label(&value[..end]) {
                    return Some(encoding);
                }
            }
        }
        rest = &rest[start + b"<meta".len()..];
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::xorshift_bytes;
    use encoding_rs::{BIG5, GBK, SHIFT_JIS, UTF_16BE, UTF_16LE, WINDOWS_1252};

    const SIMPLIFIED: &str = "知识库系统支持多种文档格式。用户上传文件以后，系统会自动识别编码，\
        把内容切分成段落并建立索引，然后就可以用自然语言提问了。这一段文字用来测试国标码的识别。";
    const TRADITIONAL: &str = "知識庫系統支援多種文件格式。使用者上傳檔案以後，系統會自動辨識編碼，\
        把內容切分成段落並建立索引，然後就可以用自然語言提問了。這一段文字用來測試大五碼的辨識。";

    fn encode(encoding: &'static Encoding, text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding.encode(text);
        assert!(!unmappable, "{} cannot encode the sample", encoding.name());
        bytes.into_owned()
    }

    #[test]
    fn gbk_and_big5_paragraphs_decode_to_the_original() {
        let gbk = encode(GBK, SIMPLIFIED);
        assert!(std::str::from_utf8(&gbk).is_err());
        assert_eq!(decode_text(&gbk).unwrap(), SIMPLIFIED);
        let big5 = encode(BIG5, TRADITIONAL);
        assert_eq!(decode_text(&big5).unwrap(), TRADITIONAL);
        let sjis = encode(
            SHIFT_JIS,
            "日本語のテキストファイルです。文字コードはシフトJISです。",
        );
        assert_eq!(
            decode_text(&sjis).unwrap(),
            "日本語のテキストファイルです。文字コードはシフトJISです。"
        );
        let latin = encode(WINDOWS_1252, "Café crème brûlée, déjà vu.");
        assert_eq!(decode_text(&latin).unwrap(), "Café crème brûlée, déjà vu.");
    }

    #[test]
    fn utf16_with_bom() {
        let text = "UTF-16 文本\r\n第二行";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode_text(&le).unwrap(), text);
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode_text(&be).unwrap(), text);
        // Either way the decoded result is what encoding_rs would produce too.
        assert_eq!(UTF_16LE.decode_without_bom_handling(&le[2..]).0, text);
        assert_eq!(UTF_16BE.decode_without_bom_handling(&be[2..]).0, text);
    }

    #[test]
    fn utf8_is_borrowed_and_bom_stripped() {
        assert!(matches!(
            decode_text("中文".as_bytes()).unwrap(),
            Cow::Borrowed("中文")
        ));
        assert_eq!(decode_text(b"\xEF\xBB\xBFabc").unwrap(), "abc");
        assert_eq!(decode_text(b"").unwrap(), "");
    }

    #[test]
    fn damaged_utf8_stays_utf8() {
        let mut bytes = SIMPLIFIED.as_bytes().to_vec();
        // Cut mid-character, as a truncated upload would be.
        bytes.truncate(bytes.len() - 1);
        let text = decode_text(&bytes).unwrap();
        assert!(text.starts_with("知识库系统"), "{text}");
        bytes[3] = 0xFF;
        let text = decode_text(&bytes).unwrap();
        assert!(text.contains("系统支持"), "{text}");
    }

    #[test]
    fn binary_is_not_text() {
        for len in [64, 1000, 100_000] {
            let bytes = xorshift_bytes(len, 7);
            let err = decode_text(&bytes).unwrap_err();
            assert_eq!(err.code(), "not_text", "{len}: {err}");
        }
        // Random bytes without NUL, so the other checks have to catch them.
        let bytes: Vec<u8> = xorshift_bytes(10_000, 9)
            .into_iter()
            .map(|b| b.max(1))
            .collect();
        assert_eq!(decode_text(&bytes).unwrap_err().code(), "not_text");
        let err = decode_text(b"abc\0def").unwrap_err();
        assert!(err.to_string().contains("NUL byte at offset 3"), "{err}");
        let err = decode_text(b"text with a bell\x07 and\x01 controls").unwrap_err();
        assert!(err.to_string().contains("control characters"), "{err}");
        // UTF-16 text may hold NUL bytes, but not NUL characters.
        let err = decode_text(b"\xFF\xFEa\0\0\0").unwrap_err();
        assert_eq!(err.code(), "not_text");
    }

    #[test]
    fn text_controls_are_allowed() {
        let text = "col\tcol\r\nline\x0cpage \x1b[31mred\x1b[0m";
        assert_eq!(decode_text(text.as_bytes()).unwrap(), text);
    }

    #[test]
    fn html_meta_charset_is_honoured() {
        // Too short for the detector to be sure, so the declaration decides.
        let mut page = b"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=gb2312\"></head><body>".to_vec();
        page.extend(encode(GBK, "中文"));
        page.extend(b"</body></html>");
        assert!(decode_html(&page).unwrap().contains("中文"));
        assert_eq!(meta_charset(b"<META CHARSET=big5>"), Some(BIG5));
        assert_eq!(
            meta_charset(b"<meta charset = 'Shift_JIS' />"),
            Some(SHIFT_JIS)
        );
        assert_eq!(meta_charset(b"<meta name=x><p>charset=gbk"), None);
        assert_eq!(meta_charset(b"<meta charset=nonsense>"), None);
    }
}
