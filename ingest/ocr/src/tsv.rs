//! Tesseract's TSV output: one row per page, block, paragraph, line and word, with a
//! confidence per word. It keeps the layout (which plain-text output flattens) and gives
//! the confidence the API reports.

use crate::RecognizedPage;

/// Row level of a word in the TSV (1 is a page, 2 a block, 3 a paragraph, 4 a line).
const WORD: u32 = 5;

/// Pages, paragraphs, lines and words of a TSV in reading order. Pages without words are
/// kept (empty), so a blank page is reported rather than skipped; rows that do not parse
/// are ignored.
pub fn parse_tsv(tsv: &str) -> Vec<RecognizedPage> {
    struct Page {
        number: u32,
        paragraphs: Vec<String>,
        confidence_sum: f64,
        words: usize,
        /// (block, paragraph) and line of the last word, to know where the next one goes.
        at: Option<((u32, u32), u32)>,
    }
    let mut pages: Vec<Page> = Vec::new();
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let [
            level,
            page,
            block,
            par,
            line,
            _,
            _,
            _,
            _,
            _,
            conf,
            ref rest @ ..,
        ] = cols[..]
        else {
            continue;
        };
        let number = |s: &str| s.trim().parse::<u32>().ok();
        let (Some(level), Some(page), Some(block), Some(par), Some(line)) = (
            number(level),
            number(page),
            number(block),
            number(par),
            number(line),
        ) else {
            continue;
        };
        if pages.last().is_none_or(|p| p.number != page) {
            pages.push(Page {
                number: page,
                paragraphs: Vec::new(),
                confidence_sum: 0.0,
                words: 0,
                at: None,
            });
        }
        let Some(current) = pages.last_mut() else {
            continue;
        };
        let text = rest.join("\t");
        let text = text.trim();
        if level != WORD || text.is_empty() {
            continue;
        }
        let here = ((block, par), line);
        match current.at {
            Some((paragraph, previous_line)) if paragraph == here.0 => {
                let last = current.paragraphs.last_mut().expect("paragraph started");
                last.push(if previous_line == line { ' ' } else { '\n' });
                last.push_str(text);
            }
            _ => current.paragraphs.push(text.to_string()),
        }
        current.at = Some(here);
        current.confidence_sum += conf.trim().parse::<f64>().unwrap_or(0.0).max(0.0);
        current.words += 1;
    }
    pages
        .into_iter()
        .map(|p| RecognizedPage {
            page: p.number,
            confidence: (p.words > 0)
                .then(|| ((p.confidence_sum / p.words as f64) * 10.0).round() as f32 / 10.0),
            words: p.words,
            paragraphs: p.paragraphs,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext";

    fn row(
        level: u32,
        page: u32,
        block: u32,
        par: u32,
        line: u32,
        conf: f32,
        text: &str,
    ) -> String {
        format!("{level}\t{page}\t{block}\t{par}\t{line}\t1\t0\t0\t10\t10\t{conf}\t{text}")
    }

    #[test]
    fn words_lines_paragraphs_and_confidence() {
        let rows = [
            HEADER.to_string(),
            row(1, 1, 0, 0, 0, -1.0, ""),
            row(2, 1, 1, 0, 0, -1.0, ""),
            row(5, 1, 1, 1, 1, 90.0, "数"),
            row(5, 1, 1, 1, 1, 80.0, "据"),
            row(5, 1, 1, 1, 2, 70.0, "库"),
            row(5, 1, 1, 2, 1, 60.0, "second"),
            row(5, 1, 1, 2, 1, 0.0, "  "),
            row(5, 1, 2, 1, 1, 100.0, "block"),
            row(1, 2, 0, 0, 0, -1.0, ""),
            "garbage row".to_string(),
            row(1, 3, 0, 0, 0, -1.0, ""),
            row(5, 3, 1, 1, 1, 50.5, "third"),
        ];
        let pages = parse_tsv(&rows.join("\n"));
        assert_eq!(
            pages,
            [
                RecognizedPage {
                    page: 1,
                    confidence: Some(80.0),
                    words: 5,
                    paragraphs: vec!["数 据\n库".into(), "second".into(), "block".into()],
                },
                RecognizedPage {
                    page: 2,
                    confidence: None,
                    words: 0,
                    paragraphs: vec![],
                },
                RecognizedPage {
                    page: 3,
                    confidence: Some(50.5),
                    words: 1,
                    paragraphs: vec!["third".into()],
                },
            ]
        );
        assert!(parse_tsv("").is_empty());
    }
}
