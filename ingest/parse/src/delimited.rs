//! CSV and TSV via the csv crate: the whole file becomes one table block.

use crate::common::BlockBuilder;
use crate::{Block, BlockKind};

/// Delimiters tried when the format does not fix one, in order of preference on ties.
const CANDIDATES: &[u8] = b",\t;|";
/// Records inspected to choose a delimiter.
const SNIFF_RECORDS: usize = 20;

/// Parses delimited text into a single [`BlockKind::Table`] block whose first line is the
/// header row. `delimiter` is sniffed when `None`.
pub(crate) fn parse(text: &str, delimiter: Option<u8>) -> Vec<Block> {
    let delimiter = delimiter.unwrap_or_else(|| sniff(text));
    let lines: Vec<String> = records(text, delimiter)
        .filter(|row| row.iter().any(|c| !c.is_empty()))
        .map(|row| row.join(" | "))
        .collect();
    let mut builder = BlockBuilder::default();
    builder.push(BlockKind::Table, lines.join("\n"), None);
    builder.finish()
}

/// Rows of cleaned cells. Rows may differ in length: real exports have ragged lines.
fn records(text: &str, delimiter: u8) -> impl Iterator<Item = Vec<String>> + '_ {
    byte_records(text, delimiter).map(|record| record.iter().map(clean_cell).collect())
}

/// The raw records of `text` split at `delimiter`, rows of any length.
fn byte_records(text: &str, delimiter: u8) -> impl Iterator<Item = csv::ByteRecord> + '_ {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes())
        .into_byte_records()
        // Reading from memory with flexible rows and byte records cannot fail; were it to,
        // the rows read so far are still the best answer.
        .map_while(Result::ok)
}

/// A cell as one line: every whitespace run (including newlines in quoted fields) becomes
/// one space, so that each table row stays on its own line.
fn clean_cell(cell: &[u8]) -> String {
    String::from_utf8_lossy(cell)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The candidate that splits the first records into the most consistent number (at least
/// two) of fields; a comma when none does, which reads the file as a single column.
fn sniff(text: &str) -> u8 {
    let mut best = (0usize, CANDIDATES[0]);
    for &delimiter in CANDIDATES {
        let counts: Vec<usize> = byte_records(text, delimiter)
            .filter(|r| r.iter().any(|f| !f.is_empty()))
            .take(SNIFF_RECORDS)
            .map(|r| r.len())
            .collect();
        // The most common field count, preferring the wider one on ties.
        let mode = counts
            .iter()
            .map(|&n| (counts.iter().filter(|&&m| m == n).count(), n))
            .max();
        let Some((agreeing, fields)) = mode else {
            continue;
        };
        if fields < 2 {
            continue;
        }
        // Agreement matters most; more fields break ties between equally regular splits.
        let score = agreeing * 1000 + fields.min(999);
        if score > best.0 {
            best = (score, delimiter);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::sniff;
    use crate::{BlockKind, DocFormat, ParseError, parse};

    fn table(format: DocFormat, input: &str) -> String {
        let doc = parse(format, input.as_bytes()).unwrap();
        assert_eq!(doc.blocks.len(), 1, "{:?}", doc.blocks);
        let block = &doc.blocks[0];
        assert_eq!(block.kind, BlockKind::Table);
        assert!(block.heading_path.is_empty() && block.page.is_none());
        assert_eq!(doc.title, None);
        block.text.clone()
    }

    #[test]
    fn quoted_fields_with_commas_and_newlines() {
        let csv =
            "name,comment,port\r\nhttp,\"web, plain\",80\r\nssh,\"line one\nline two\",22\r\n";
        assert_eq!(
            table(DocFormat::Csv, csv),
            "name | comment | port\nhttp | web, plain | 80\nssh | line one line two | 22"
        );
    }

    #[test]
    fn delimiter_is_sniffed() {
        assert_eq!(sniff("a;b;c\n1;2,5;3\n4;5;6"), b';');
        assert_eq!(sniff("a\tb\n1\t2"), b'\t');
        assert_eq!(sniff("a|b|c\n1|2|3"), b'|');
        assert_eq!(sniff("a,b\n1,2"), b',');
        assert_eq!(sniff("single column\nvalues"), b',');
        // Commas inside quotes do not count.
        assert_eq!(sniff("\"x,y,z\";b\n\"1,2,3\";2"), b';');
        assert_eq!(
            table(DocFormat::Csv, "城市;人口\n北京;2189万\n上海;2487万\n"),
            "城市 | 人口\n北京 | 2189万\n上海 | 2487万"
        );
    }

    #[test]
    fn tsv_is_split_at_tabs_only() {
        assert_eq!(
            table(DocFormat::Tsv, "title\tnote\nHello, world\tone, two\n"),
            "title | note\nHello, world | one, two"
        );
        // A single column with commas stays whole.
        assert_eq!(table(DocFormat::Tsv, "a, b\nc, d"), "a, b\nc, d");
    }

    #[test]
    fn header_only_ragged_and_blank_rows() {
        assert_eq!(table(DocFormat::Csv, "id,name,city\n"), "id | name | city");
        assert_eq!(
            table(DocFormat::Csv, "a,b,c\n1,2\n\n,,\n3,4,5,6\n"),
            "a | b | c\n1 | 2\n3 | 4 | 5 | 6"
        );
        let err = parse(DocFormat::Csv, b",,,\n,,\n").unwrap_err();
        assert!(matches!(err, ParseError::Empty), "{err:?}");
        let err = parse(DocFormat::Csv, b"").unwrap_err();
        assert!(matches!(err, ParseError::Empty), "{err:?}");
    }

    #[test]
    fn legacy_encoded_csv() {
        let (gbk, _, _) =
            encoding_rs::GBK.encode("产品,价格,说明\n苹果,5元,新鲜的水果\n香蕉,3元,进口的水果\n");
        let doc = parse(DocFormat::Csv, &gbk).unwrap();
        assert_eq!(
            doc.blocks[0].text,
            "产品 | 价格 | 说明\n苹果 | 5元 | 新鲜的水果\n香蕉 | 3元 | 进口的水果"
        );
    }
}
