//! Bytes as text on the agent's hot path: every exec's path, directory, cgroup and arguments,
//! and every exec id, are checked to be UTF-8 before they become a `&str`. Nearly all of them
//! are ASCII, which is recognized here sixteen bytes at a time before the standard library's
//! full check is asked for; that check walks a short string a byte at a time and cost about a
//! hundred instructions for each 30-byte path or id.

use std::{borrow::Cow, str::Utf8Error};

/// `bytes` as text, when they are UTF-8.
pub fn utf8(bytes: &[u8]) -> Result<&str, Utf8Error> {
    if is_ascii(bytes) {
        // SAFETY: ASCII is UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

/// `bytes` as text, invalid UTF-8 replaced as `String::from_utf8_lossy` replaces it (and only
/// then copied).
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Whether every byte is below 0x80. Sixteen bytes at a time, each block folded whole so that
/// the compiler makes it a few vector instructions; a string of sixteen bytes or more ends with
/// its last sixteen, read again where they overlap; a shorter one is read as two words that
/// may overlap.
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let block = |chunk: &[u8]| chunk.iter().fold(0u8, |any, &b| any | b) < 0x80;
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(word)
    };
    match bytes.len() {
        0 => true,
        1..=8 => word(bytes) & HIGHS == 0,
        n @ 9..=15 => (word(&bytes[..8]) | word(&bytes[n - 8..])) & HIGHS == 0,
        n => {
            let mut blocks = bytes.chunks_exact(16);
            blocks.all(block) && (blocks.remainder().is_empty() || block(&bytes[n - 16..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the word and block sizes, with one byte of each kind at every
    /// place: the same answer as the standard library's.
    #[test]
    fn agrees_with_the_standard_library() {
        for len in 0..70 {
            let ascii = vec![b'a'; len];
            assert_eq!(utf8(&ascii).ok(), std::str::from_utf8(&ascii).ok());
            for at in 0..len {
                for b in [0x00, 0x7f, 0x80, 0xc3, 0xff] {
                    let mut bytes = ascii.clone();
                    bytes[at] = b;
                    assert_eq!(
                        utf8(&bytes).ok(),
                        std::str::from_utf8(&bytes).ok(),
                        "{len} {at} {b:#x}"
                    );
                    assert_eq!(is_ascii(&bytes), bytes.is_ascii(), "{len} {at} {b:#x}");
                    assert_eq!(lossy(&bytes), String::from_utf8_lossy(&bytes));
                }
            }
            let mut text = "é".repeat(len / 2);
            text.push_str(&"a".repeat(len % 2));
            assert_eq!(utf8(text.as_bytes()).ok(), Some(text.as_str()));
        }
    }
}
