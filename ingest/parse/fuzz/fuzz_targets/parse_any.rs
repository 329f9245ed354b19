//! Detects and parses arbitrary bytes under an arbitrary file name: nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zhiku_parse::{detect_format, parse};

/// Names that steer detection to each parser (and to the content sniffers).
const NAMES: &[&str] = &[
    "a.txt", "a.md", "a.html", "a.pdf", "a.csv", "a.tsv", "a.docx", "upload", "a.bin", "a.doc",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(selector) % NAMES.len()];
    if let Ok(format) = detect_format(name, None, bytes) {
        let _ = parse(format, bytes);
    }
});
