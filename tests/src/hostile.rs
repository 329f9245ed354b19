//! Hostile files, generated: each one once killed the whole service with a single upload
//! (stack overflow, unbounded recursion, memory exhaustion). The hostile-input suite
//! uploads them, the sandbox's tests parse them, and the fuzzers start from them.

use std::io::Write;

use flate2::{Compress, Compression, FlushCompress};

/// One hostile file: a name (whose extension says the format), its bytes, and the
/// outcomes it may have: error codes of a file that fails alone, or `indexed` once the
/// parser copes with it.
pub struct Hostile {
    /// File name to upload it as.
    pub name: &'static str,
    /// What it does to a parser.
    pub what: &'static str,
    /// The file.
    pub bytes: Vec<u8>,
    /// Acceptable outcomes: error codes, or `indexed`.
    pub codes: &'static [&'static str],
}

/// Every hostile file, at full strength.
pub fn all() -> Vec<Hostile> {
    vec![
        Hostile {
            name: "deep.html",
            what: "HTML nested 200,000 elements deep",
            bytes: deep_html(200_000),
            // The HTML walk is iterative now; before, the stack overflowed.
            codes: &["indexed"],
        },
        Hostile {
            name: "self-drawing.pdf",
            what: "a PDF whose form XObject draws itself",
            bytes: self_drawing_pdf(),
            // Refused before extraction now; before, the extractor's recursion overflowed
            // the stack.
            codes: &["invalid_pdf", "parser_crashed"],
        },
        Hostile {
            name: "flate-bomb.pdf",
            what: "a PDF content stream that inflates twice to 16 GiB",
            bytes: flate_bomb_pdf(16 << 10),
            // Refused by inflating with a cap; before, lopdf allocated until the process died.
            codes: &["invalid_pdf", "parser_out_of_memory"],
        },
    ]
}

/// `<html><body>`, then `depth` nested `<span>`s around one word.
pub fn deep_html(depth: usize) -> Vec<u8> {
    let mut html = String::from("<html><body>");
    html.push_str(&"<span>".repeat(depth));
    html.push('x');
    html.into_bytes()
}

/// A one-page PDF whose page draws form XObject 4, whose content draws `/X`, which its
/// resources map back to object 4: drawing never ends.
pub fn self_drawing_pdf() -> Vec<u8> {
    let content = b"/X Do";
    let stream = crate::pdf_stream;
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /X 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        stream(
            "/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /X 4 0 R >> >>",
            content,
        ),
        stream("", content),
    ];
    crate::pdf_from_objects(&objects)
}

/// A one-page PDF whose content stream is zlib inside zlib (`/Filter [/FlateDecode
/// /FlateDecode]`) and inflates to `mib` MiB of zeros; the file stays well under 1 MB.
pub fn flate_bomb_pdf(mib: usize) -> Vec<u8> {
    let inner = zeros_zlib(mib);
    let mut outer = flate2::write::ZlibEncoder::new(Vec::new(), Compression::best());
    outer.write_all(&inner).expect("compress in memory");
    let outer = outer.finish().expect("compress in memory");
    let stream = crate::pdf_stream("/Filter [/FlateDecode /FlateDecode]", &outer);
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        stream,
    ];
    crate::pdf_from_objects(&objects)
}

/// A valid zlib stream of `mib` MiB of zeros, built without compressing them all: after a
/// full flush the compressor's state is reset, so every further MiB of zeros compresses
/// to the same bytes, which are repeated.
fn zeros_zlib(mib: usize) -> Vec<u8> {
    let block = vec![0u8; 1 << 20];
    let mut compress = Compress::new(Compression::best(), true);
    let mut out = Vec::with_capacity(1 << 16);
    let run = |compress: &mut Compress, input: &[u8], flush: FlushCompress| {
        let mut produced = Vec::with_capacity(1 << 16);
        let start_in = compress.total_in();
        loop {
            let consumed = (compress.total_in() - start_in) as usize;
            if produced.capacity() - produced.len() < 1024 {
                produced.reserve(1 << 16);
            }
            let status = compress
                .compress_vec(&input[consumed..], &mut produced, flush)
                .expect("compress in memory");
            let done = (compress.total_in() - start_in) as usize == input.len();
            if done && (produced.capacity() > produced.len() || status == flate2::Status::StreamEnd)
            {
                break;
            }
        }
        produced
    };
    out.extend(run(&mut compress, &block, FlushCompress::Full));
    let repeated = run(&mut compress, &block, FlushCompress::Full);
    for _ in 1..mib {
        out.extend_from_slice(&repeated);
    }
    // An empty final block, then Adler-32 of the zeros: a = 1, b = n mod 65521.
    let total = (mib as u64) << 20;
    out.extend_from_slice(&[0x03, 0x00]);
    let b = (total % 65521) as u32;
    out.extend_from_slice(&((b << 16) | 1).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn the_zeros_stream_is_valid_zlib_of_the_right_length() {
        let stream = super::zeros_zlib(3);
        let mut decoder = flate2::read::ZlibDecoder::new(&stream[..]);
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 3 << 20);
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn the_bomb_is_small() {
        let pdf = super::flate_bomb_pdf(16 << 10);
        eprintln!("the 16 GiB flate bomb is a PDF of {} bytes", pdf.len());
        assert!(pdf.len() < 1 << 20, "{} bytes", pdf.len());
    }
}
