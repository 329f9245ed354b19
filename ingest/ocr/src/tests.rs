use super::*;

/// A PNG signature and IHDR chunk claiming `width` x `height`; the checks never look at
/// a chunk's CRC.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend(width.to_be_bytes());
    png.extend(height.to_be_bytes());
    png.extend([8, 0, 0, 0, 0, 0, 0, 0, 0]);
    png
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let mut png = png_header(100_000, 100_000);
    png.extend(b"\0\0\0\0IEND\xaeB`\x82");
    let err = check_image(&png, 50_000_000).unwrap_err();
    assert_eq!(err.code(), "image_too_large");
    assert!(err.to_string().contains("100000 x 100000"), "{err}");
    // BMP: 40-byte info header with width and height at 18 and 22.
    let mut bmp = b"BM".to_vec();
    bmp.extend(0u32.to_le_bytes());
    bmp.extend([0; 4]);
    bmp.extend(54u32.to_le_bytes());
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(60_000u32.to_le_bytes());
    bmp.extend(60_000u32.to_le_bytes());
    bmp.extend([1, 0, 24, 0]);
    bmp.extend([0; 40]);
    assert_eq!(
        check_image(&bmp, 50_000_000).unwrap_err().code(),
        "image_too_large"
    );
    assert_eq!(check_image(&bmp, u64::MAX).unwrap(), (60_000, 60_000));
}

#[test]
fn truncated_empty_and_foreign_bytes_are_invalid() {
    let err = check_image(b"", 100).unwrap_err();
    assert_eq!(err.code(), "invalid_image");
    assert!(err.to_string().contains("0 bytes"), "{err}");
    let err = check_image(&png_header(10, 10), 1000).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = check_image(b"GIF89a\x01\0\x01\0", 1000).unwrap_err();
    assert!(err.to_string().contains("not a PNG, JPEG"), "{err}");
    let err = check_image(&png_header(0, 10), 1000).unwrap_err();
    assert!(err.to_string().contains("0 x 10"), "{err}");
    let mut webp = b"RIFF\xff\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
    webp.extend([9, 0, 0, 9, 0, 0]);
    let err = check_image(&webp, 1000).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

fn tiff_pages(bytes: &[u8]) -> Option<usize> {
    tiff_directories(bytes).map(|t| t.directories.len())
}

/// Little-endian header, then directories at 8 and 26 with no entries.
fn two_page_tiff() -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend([0, 0, 26, 0, 0, 0]);
    tiff.resize(26, 0);
    tiff.extend([0, 0, 0, 0, 0, 0]);
    tiff
}

#[test]
fn tiff_pages_follow_the_directory_chain() {
    let tiff = two_page_tiff();
    assert_eq!(tiff_pages(&tiff), Some(2));
    // A chain pointing back at itself stops.
    let mut looped = tiff.clone();
    looped[28] = 8;
    assert_eq!(tiff_pages(&looped), Some(2));
    looped[28] = 26;
    assert_eq!(tiff_pages(&looped), Some(2));
    assert_eq!(tiff_pages(b"MM\0*\0\0\0\x08"), Some(0));
    assert_eq!(tiff_pages(b"\x89PNG"), None);
}

#[test]
fn a_page_of_a_tiff_stands_alone() {
    let tiff = two_page_tiff();
    let second = select_page(&tiff, 2).unwrap();
    assert_eq!(&second[..8], b"II*\0\x1a\0\0\0");
    assert_eq!(tiff_pages(&second), Some(1));
    let first = select_page(&tiff, 1).unwrap();
    assert_eq!(tiff_pages(&first), Some(1));
    // The first directory's next pointer (at 10) now ends the chain.
    assert_eq!(&first[10..14], [0, 0, 0, 0]);
    assert_eq!(first.len(), tiff.len());
    for page in [0, 3] {
        let err = select_page(&tiff, page).unwrap_err();
        assert!(err.to_string().contains("it has 2"), "{err}");
    }
    // Other images have one page, which is the file as it is.
    let png = b"\x89PNG\r\n\x1a\n";
    assert!(matches!(
        select_page(png, 1).unwrap(),
        std::borrow::Cow::Borrowed(_)
    ));
    assert!(select_page(png, 2).is_err());
}

#[test]
fn every_truncation_of_a_header_is_an_error_not_a_panic() {
    let mut png = png_header(640, 480);
    png.extend(b"\0\0\0\0IEND\xaeB`\x82");
    // Cut anywhere before the end marker is complete (only its CRC may go missing:
    // the image data is whole by then).
    for len in 0..png.len() - 4 {
        assert!(check_image(&png[..len], 1 << 30).is_err(), "{len}");
    }
    assert_eq!(check_image(&png, 1 << 30).unwrap(), (640, 480));
}

#[test]
fn huge_pages_are_rasterized_at_a_lower_resolution() {
    let a4 = Some((595.0, 842.0));
    assert_eq!(raster_dpi(a4, 300, 50_000_000), 300);
    // 200 x 200 inches at 300 DPI would be 3.6 gigapixels.
    let dpi = raster_dpi(Some((14_400.0, 14_400.0)), 300, 50_000_000);
    assert_eq!(dpi, 35);
    assert!(u64::from(dpi * 200).pow(2) <= 50_000_000);
    assert_eq!(raster_dpi(None, 300, 50_000_000), 300);
    assert_eq!(raster_dpi(Some((0.0, 842.0)), 300, 10), 300);
}

#[test]
fn runaway_processes_are_killed_at_the_deadline() {
    let dir = scratch_dir().unwrap();
    let started = Instant::now();
    let mut sleep = Command::new("sleep");
    sleep.arg("30");
    let err = run(
        &mut sleep,
        "sleep",
        dir.path(),
        Instant::now() + Duration::from_millis(300),
        0,
    )
    .unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut fail = Command::new("sh");
    fail.args(["-c", "echo 'Error in pixRead: pix not read' >&2; exit 1"]);
    let err = run(
        &mut fail,
        "sh",
        dir.path(),
        Instant::now() + Duration::from_secs(30),
        30,
    )
    .unwrap_err();
    assert_eq!(err.code(), "invalid_image");
    assert!(err.to_string().contains("pixRead"), "{err}");
}

#[test]
fn bad_settings_and_missing_languages_are_named() {
    let config = |languages: &str, dpi| OcrConfig {
        languages: languages.into(),
        dpi,
        ..OcrConfig::default()
    };
    let err = Ocr::new(config("chi_sim;rm", 300)).unwrap_err();
    assert!(err.to_string().contains("languages"), "{err}");
    let err = Ocr::new(config("eng", 10)).unwrap_err();
    assert!(err.to_string().contains("dpi 10"), "{err}");
    // Needs the real tesseract: a language it has no data for names the package.
    let err = Ocr::new(config("eng+zz_xx", 300)).unwrap_err();
    assert!(err.to_string().contains("tesseract-ocr-zz-xx"), "{err}");
    assert!(Ocr::new(OcrConfig::default()).is_ok());
}
