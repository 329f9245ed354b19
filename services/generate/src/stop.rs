//! Stop sequences over a token stream: text is released only once it can no longer turn
//! into a stop sequence, so a client never sees the start of one.

/// Watches generated text for any of the stop sequences.
#[derive(Debug, Default)]
pub(crate) struct StopScanner {
    stops: Vec<String>,
    /// Generated text not yet released: it ends in a prefix of some stop sequence.
    held: String,
}

/// What one piece of generated text amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// Text safe to release now.
    pub release: String,
    /// Whether a stop sequence was completed (generation must end; it is not released).
    pub stopped: bool,
}

impl StopScanner {
    /// A scanner for `stops` (empty strings are ignored).
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Takes the next piece of generated text.
    pub(crate) fn push(&mut self, piece: &str) -> Scanned {
        self.held.push_str(piece);
        if self.stops.is_empty() {
            return Scanned {
                release: std::mem::take(&mut self.held),
                stopped: false,
            };
        }
        // The earliest complete stop sequence ends generation; text before it is released.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let release = self.held[..at].to_string();
            self.held.clear();
            return Scanned {
                release,
                stopped: true,
            };
        }
        // Hold back the longest tail that is a proper prefix of a stop sequence.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                s.char_indices()
                    .skip(1)
                    .map(|(i, _)| &s[..i])
                    .filter(|prefix| self.held.ends_with(prefix))
                    .map(str::len)
            })
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let release = self.held[..cut].to_string();
        self.held.drain(..cut);
        Scanned {
            release,
            stopped: false,
        }
    }

    /// Text still held when generation ends for another reason: it was not a stop.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut scanner = StopScanner::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            let scanned = scanner.push(piece);
            out.push_str(&scanned.release);
            if scanned.stopped {
                return (out, true);
            }
        }
        out.push_str(&scanner.finish());
        (out, false)
    }

    #[test]
    fn stops_across_pieces_and_never_leaks_a_partial_stop() {
        assert_eq!(run(&["\n\n"], &["a", "b\n", "\nc"]), ("ab".into(), true));
        assert_eq!(run(&["END"], &["x E", "N", "D y"]), ("x ".into(), true));
        // A prefix that turns out not to be a stop is released in the end.
        assert_eq!(run(&["END"], &["x E", "N", "o"]), ("x ENo".into(), false));
        assert_eq!(run(&["END"], &["x EN"]), ("x EN".into(), false));
        // Whatever stop comes first wins; multi-byte stops work.
        assert_eq!(run(&["。", "b"], &["ab。"]), ("a".into(), true));
        assert_eq!(run(&["结束"], &["好的结", "束了"]), ("好的".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&[""], &["a"]), ("a".into(), false));
    }

    #[test]
    fn held_text_is_released_as_soon_as_it_cannot_be_a_stop() {
        let mut scanner = StopScanner::new(&["STOP".to_string()]);
        assert_eq!(scanner.push("go S").release, "go ");
        assert_eq!(scanner.push("T").release, "");
        assert_eq!(scanner.push("x").release, "STx");
    }
}
