//! Bytes as text on the agent's hot path: every exec's path, directory, cgroup and arguments,
//! and every exec id, are checked to be UTF-8 before they become a `&str`. Nearly all of them
//! are ASCII, which is recognized here eight bytes at a time before the standard library's
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

/// Whether every byte is below 0x80: the string's words OR'ed together (its last word read
/// again where it overlaps the others), then their high bits checked once. Counted by
/// valgrind, this took 35 to 135 instructions for strings of 12 to 420 bytes where
/// `str::from_utf8` took 120 to 265, and where blocks of sixteen folded byte by byte (which
/// the compiler did not make vector instructions) took up to 470.
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let n = bytes.len();
    if n < 8 {
        let mut word = [0u8; 8];
        word[..n].copy_from_slice(bytes);
        return u64::from_le_bytes(word) & HIGHS == 0;
    }
    let word = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let mut any = word(n - 8);
    let mut at = 0;
    while at + 8 <= n {
        any |= word(at);
        at += 8;
    }
    any & HIGHS == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around one, two and several words, with one byte of each kind at every
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
