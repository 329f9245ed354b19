//! Streaming UTF-8 assembly of token pieces.
//!
//! Byte-level BPE vocabularies split multi-byte characters (CJK, emoji) across tokens, so a
//! single token's bytes are often not valid UTF-8 on their own.

/// Turns a stream of byte pieces into valid UTF-8 text, holding back an incomplete
/// character until the bytes that finish it arrive.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes` and returns the text that is now complete (possibly empty).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut consumed = 0;
        for chunk in self.pending.utf8_chunks() {
            out.push_str(chunk.valid());
            consumed += chunk.valid().len();
            let invalid = chunk.invalid();
            if invalid.is_empty() {
                continue;
            }
            // An invalid sequence at the very end may just be a character whose remaining
            // bytes are still to come; anywhere else it can never become valid.
            if consumed + invalid.len() == self.pending.len() && could_complete(invalid) {
                break;
            }
            out.push(char::REPLACEMENT_CHARACTER);
            consumed += invalid.len();
        }
        self.pending.drain(..consumed);
        out
    }

    /// Returns whatever is still held back, replacing an unfinished character with U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

/// Whether `bytes` is a proper prefix of some UTF-8 character.
fn could_complete(bytes: &[u8]) -> bool {
    let Some((&lead, continuation)) = bytes.split_first() else {
        return false;
    };
    let needed = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return false,
    };
    bytes.len() < needed && continuation.iter().all(|b| b & 0xC0 == 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_passes_straight_through() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"hello"), "hello");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn split_character_is_held_until_complete() {
        let bytes = "密码".as_bytes();
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..4]), "密");
        assert_eq!(s.push(&bytes[4..]), "码");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn emoji_split_in_four() {
        let bytes = "a😀b".as_bytes();
        let mut s = Utf8Stream::default();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&s.push(std::slice::from_ref(b)));
        }
        assert_eq!(out, "a😀b");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"a\xFFb"), "a\u{FFFD}b");
        // A lead byte followed by a non-continuation byte can never complete.
        assert_eq!(s.push(b"\xE5x"), "\u{FFFD}x");
    }

    #[test]
    fn unfinished_character_is_flushed_lossily() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&"码".as_bytes()[..2]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
        assert_eq!(s.finish(), "");
    }
}
