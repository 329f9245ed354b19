//! Making an answer's `[n]` markers trustworthy: each kept marker names a source that was
//! given to the model, and the sources actually cited are known.

/// The answer with every `[n]` (also full-width `［n］`) whose `n` is not a source number
/// in `1..=sources` removed, and the source numbers it cites, in order of first citation.
pub fn resolve_citations(answer: &str, sources: usize) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(answer.len());
    let mut cited = Vec::new();
    let mut rest = answer;
    while let Some((start, open)) = rest.char_indices().find(|(_, c)| *c == '[' || *c == '［') {
        let after = &rest[start + open.len_utf8()..];
        let digits: &str = &after[..after
            .char_indices()
            .find(|(_, c)| !c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i)];
        let close = after[digits.len()..].chars().next();
        let is_marker = !digits.is_empty() && matches!(close, Some(']') | Some('］'));
        if !is_marker {
            out.push_str(&rest[..start + open.len_utf8()]);
            rest = after;
            continue;
        }
        let marker_len = open.len_utf8() + digits.len() + close.map_or(0, char::len_utf8);
        let n: usize = digits.parse().unwrap_or(0);
        if (1..=sources).contains(&n) {
            out.push_str(&rest[..start + marker_len]);
            if !cited.contains(&n) {
                cited.push(n);
            }
        } else {
            // A marker pointing nowhere goes, with the space that led to it.
            out.push_str(rest[..start].trim_end_matches(' '));
        }
        rest = &rest[start + marker_len..];
    }
    out.push_str(rest);
    (out, cited)
}

#[cfg(test)]
mod tests {
    use super::resolve_citations;

    #[test]
    fn keeps_real_markers_and_drops_dangling_ones() {
        let (text, cited) =
            resolve_citations("Backups run at two [2] in building C [1][2] [7].", 2);
        assert_eq!(text, "Backups run at two [2] in building C [1][2].");
        assert_eq!(cited, vec![2, 1]);
        let (text, cited) = resolve_citations("备份在凌晨两点运行［1］，存放在C楼[0]。", 1);
        assert_eq!(text, "备份在凌晨两点运行［1］，存放在C楼。");
        assert_eq!(cited, vec![1]);
        let (text, cited) = resolve_citations("arrays like a[i] and [x] stay; [] too", 3);
        assert_eq!(text, "arrays like a[i] and [x] stay; [] too");
        assert!(cited.is_empty());
        assert_eq!(resolve_citations("[99999999999999999999999]", 1).0, "");
    }
}
