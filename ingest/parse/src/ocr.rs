//! Text that only OCR can read: what the parsers hand to the OCR stage, and how its results
//! come back into the document as blocks.

use std::sync::Arc;

use crate::common::{is_cjk, join_wrapped_lines};
use crate::{Block, BlockKind, ParsedDocument};

/// Something for OCR to read.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OcrSource {
    /// A page of the uploaded file, which is an image: page 1 of a single image, or one
    /// page of a multi-page TIFF. The parser lists page 1 only; the OCR stage, which reads
    /// image headers, lists one task per page ([`OcrTask::image_pages`]), so that every
    /// page reports its own progress and fails alone.
    Image {
        /// 1-based page within the image file.
        page: u32,
    },
    /// A page of the uploaded PDF without a text layer.
    PdfPage {
        /// 1-based page number.
        page: u32,
        /// Width and height in points (1/72 inch) from the page's MediaBox, when readable:
        /// what rasterizing the page costs in pixels, known before rasterizing it.
        size_pt: Option<(f32, f32)>,
    },
    /// An image embedded in the document (DOCX).
    Embedded {
        /// Its part name in the archive, e.g. `word/media/image1.png`.
        name: String,
        /// Its bytes, shared with the OCR worker that reads them.
        #[serde(with = "shared_bytes")]
        bytes: Arc<[u8]>,
    },
}

/// Embedded images cross the parser sandbox's pipe as one byte string, not as a list of
/// numbers (serde's default for byte slices).
mod shared_bytes {
    use std::sync::Arc;

    pub fn serialize<S: serde::Serializer>(bytes: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Arc<[u8]>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(v.into())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out.into())
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

/// One page or image to recognise, and where its text belongs in the document.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OcrTask {
    /// What to read.
    pub source: OcrSource,
    /// Index into [`ParsedDocument::blocks`] before which the text goes (the number of
    /// blocks when it goes at the end).
    pub position: usize,
    /// Texts of the headings enclosing the text, outermost first.
    pub heading_path: Vec<String>,
}

impl OcrTask {
    /// The tasks for an image file of `pages` pages (at least one): one per page.
    pub fn image_pages(pages: u32) -> Vec<Self> {
        (1..=pages.max(1))
            .map(|page| Self {
                source: OcrSource::Image { page },
                position: 0,
                heading_path: Vec::new(),
            })
            .collect()
    }
}

/// What OCR read for one task (one page or one embedded image).
#[derive(Debug, Clone, PartialEq)]
pub struct OcrText {
    /// Index of the task in [`ParsedDocument::ocr`].
    pub task: usize,
    /// Mean word confidence, 0 to 100.
    pub confidence: f32,
    /// Paragraphs as the recognizer laid them out: lines separated by `\n`, words by
    /// spaces (also between Chinese characters, which [`ParsedDocument::merge_ocr`]
    /// removes).
    pub paragraphs: Vec<String>,
}

impl ParsedDocument {
    /// Puts recognised text where its tasks belong: every paragraph becomes a paragraph
    /// block with its task's heading path, its task's page (PDF page, or image page; none
    /// for an image inside a DOCX) and its confidence. Lines are joined like wrapped text and
    /// OCR's spaces between Chinese characters removed ([`normalize_ocr_spacing`]), so
    /// that keyword and dense search see the words the page shows. `texts` may come in
    /// any order; unknown task indices are ignored. The tasks stay listed.
    pub fn merge_ocr(&mut self, mut texts: Vec<OcrText>) {
        texts.sort_by_key(|t| t.task);
        let mut by_task: Vec<Vec<Block>> = vec![Vec::new(); self.ocr.len()];
        for text in texts {
            let Some(task) = self.ocr.get(text.task) else {
                continue;
            };
            let page = match task.source {
                OcrSource::Image { page } | OcrSource::PdfPage { page, .. } => Some(page),
                OcrSource::Embedded { .. } => None,
            };
            for paragraph in &text.paragraphs {
                let lines: Vec<String> = paragraph.lines().map(normalize_ocr_spacing).collect();
                let joined = join_wrapped_lines(lines.iter().map(String::as_str));
                if joined.trim().is_empty() {
                    continue;
                }
                by_task[text.task].push(Block {
                    kind: BlockKind::Paragraph,
                    text: joined,
                    heading_path: task.heading_path.clone(),
                    page,
                    ocr_confidence: Some(text.confidence),
                });
            }
        }
        // Inserting from the back keeps the positions of earlier tasks valid; tasks at the
        // same position keep their order because the later one goes in first.
        let mut order: Vec<usize> = (0..self.ocr.len()).collect();
        order.sort_by_key(|&i| (self.ocr[i].position, i));
        for i in order.into_iter().rev() {
            let at = self.ocr[i].position.min(self.blocks.len());
            let blocks = std::mem::take(&mut by_task[i]);
            self.blocks.splice(at..at, blocks);
        }
    }
}

/// Removes the spaces OCR puts between Chinese (and Japanese) characters, which are
/// written without spaces: `数 据 库 备 份 。` becomes `数据库备份。`. Also removes a space
/// between such a character and ASCII punctuation that follows it (`机 房 ,`) or opens
/// before it. Spaces between words of other scripts, and between Chinese and Latin words
/// (`使用 Rust 编写`), stay.
pub fn normalize_ocr_spacing(line: &str) -> String {
    let chars: Vec<char> = line.trim().chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !c.is_whitespace() {
            out.push(c);
            i += 1;
            continue;
        }
        let run_end = chars[i..]
            .iter()
            .position(|c| !c.is_whitespace())
            .map_or(chars.len(), |n| i + n);
        let before = out.chars().last();
        let after = chars.get(run_end).copied();
        let joined = match (before, after) {
            (Some(b), Some(a)) => {
                (is_cjk(b) && (is_cjk(a) || ",.;:!?)]}%".contains(a)))
                    || ("([{".contains(b) && is_cjk(a))
            }
            _ => true,
        };
        if !joined {
            out.push(' ');
        }
        i = run_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_between_chinese_characters_go() {
        assert_eq!(
            normalize_ocr_spacing("数 据 库 每 天 凌 晨 备 份 。"),
            "数据库每天凌晨备份。"
        );
        assert_eq!(normalize_ocr_spacing("機 房 , 异地"), "機房, 异地");
        assert_eq!(normalize_ocr_spacing("( 注 意 )"), "(注意)");
        assert_eq!(
            normalize_ocr_spacing("使 用 Rust 编 写 的 服 务"),
            "使用 Rust 编写的服务"
        );
        assert_eq!(
            normalize_ocr_spacing("  The  nightly backup  "),
            "The nightly backup"
        );
        assert_eq!(normalize_ocr_spacing("第 3 页"), "第 3 页");
        assert_eq!(normalize_ocr_spacing(""), "");
    }

    fn para(text: &str) -> Block {
        Block {
            kind: BlockKind::Paragraph,
            text: text.into(),
            heading_path: vec!["H".into()],
            page: None,
            ocr_confidence: None,
        }
    }

    fn task(source: OcrSource, position: usize) -> OcrTask {
        OcrTask {
            source,
            position,
            heading_path: vec!["H".into()],
        }
    }

    #[test]
    fn recognised_text_lands_at_its_tasks_positions() {
        let image = |n: &str| OcrSource::Embedded {
            name: n.into(),
            bytes: Arc::from(&b""[..]),
        };
        let mut doc = ParsedDocument {
            format: crate::DocFormat::Docx,
            title: None,
            blocks: vec![para("first"), para("second")],
            ocr: vec![
                task(image("a.png"), 1),
                task(image("b.png"), 1),
                task(image("c.png"), 2),
            ],
        };
        let text = |task, paragraphs: &[&str]| OcrText {
            task,
            confidence: 90.0,
            paragraphs: paragraphs.iter().map(|p| p.to_string()).collect(),
        };
        doc.merge_ocr(vec![
            text(2, &["end of\ndocument"]),
            text(0, &["图 片 一", "  "]),
            text(1, &["图 片\n二"]),
            text(7, &["ignored"]),
        ]);
        let got: Vec<(&str, Option<f32>)> = doc
            .blocks
            .iter()
            .map(|b| (b.text.as_str(), b.ocr_confidence))
            .collect();
        assert_eq!(
            got,
            [
                ("first", None),
                ("图片一", Some(90.0)),
                ("图片二", Some(90.0)),
                ("second", None),
                ("end of document", Some(90.0)),
            ]
        );
        assert!(doc.blocks.iter().all(|b| b.page.is_none()));
    }

    #[test]
    fn pages_come_from_the_pdf_or_the_image() {
        let mut doc = ParsedDocument {
            format: crate::DocFormat::Pdf,
            title: None,
            blocks: vec![Block {
                page: Some(1),
                ..para("text layer")
            }],
            ocr: vec![task(
                OcrSource::PdfPage {
                    page: 2,
                    size_pt: None,
                },
                1,
            )],
        };
        doc.merge_ocr(vec![OcrText {
            task: 0,
            confidence: 80.0,
            paragraphs: vec!["scanned".into()],
        }]);
        assert_eq!(doc.blocks[1].page, Some(2));
        let mut image = ParsedDocument {
            format: crate::DocFormat::Image(crate::ImageFormat::Tiff),
            title: None,
            blocks: Vec::new(),
            ocr: OcrTask::image_pages(2),
        };
        let page = |task: usize| OcrText {
            task,
            confidence: 70.0,
            paragraphs: vec![format!("page {}", task + 1)],
        };
        image.merge_ocr(vec![page(1), page(0)]);
        let pages: Vec<_> = image.blocks.iter().map(|b| b.page).collect();
        assert_eq!(pages, [Some(1), Some(2)]);
    }
}
