//! Image signatures: shared by format detection and by DOCX, which keeps only the
//! embedded pictures OCR can read.

use crate::ImageFormat;

/// DIB header sizes of the BMP versions in use (core, info, v2 to v5): `BM` alone is two
/// letters any text may start with.
const BMP_HEADER_SIZES: [u32; 7] = [12, 40, 52, 56, 64, 108, 124];

/// Recognises image signatures.
pub(crate) fn sniff_image(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(ImageFormat::Png);
    }
    if bytes.starts_with(b"\xFF\xD8\xFF") {
        return Some(ImageFormat::Jpeg);
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return Some(ImageFormat::Tiff);
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return Some(ImageFormat::Webp);
    }
    if bytes.starts_with(b"BM")
        && let Some(size) = bytes.get(14..18)
        && BMP_HEADER_SIZES.contains(&u32::from_le_bytes([size[0], size[1], size[2], size[3]]))
    {
        return Some(ImageFormat::Bmp);
    }
    None
}
