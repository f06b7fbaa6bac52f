//! A Sigma string value read as the specification (and sigma-rust) reads it: `*` is any run
//! of characters, `?` any one character, `\*`, `\?` and `\\` are those characters themselves,
//! and a backslash before anything else (or at the end) is a backslash. The prefilter and the
//! engine's own decisions both take values through here, so an escaped wildcard is never read
//! as a wildcard by one and as text by the other.

/// One piece of a value: text to find as it is, or a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    /// `*`; consecutive ones are one.
    Any,
    /// `?`.
    One,
}

/// The pieces of `value`, its text unescaped and as written (not lower-cased).
pub(super) fn pieces(value: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut escaped = false;
    for c in value.chars() {
        match (c, escaped) {
            ('*' | '?' | '\\', true) => {
                text.push(c);
                escaped = false;
            }
            ('\\', false) => escaped = true,
            ('*' | '?', false) => {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                match c {
                    '*' if out.last() == Some(&Piece::Any) => {}
                    '*' => out.push(Piece::Any),
                    _ => out.push(Piece::One),
                }
            }
            (c, true) => {
                text.push('\\');
                text.push(c);
                escaped = false;
            }
            (c, false) => text.push(c),
        }
    }
    if escaped {
        text.push('\\');
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{pieces, Piece::*};

    fn t(s: &str) -> super::Piece {
        Text(s.into())
    }

    #[test]
    fn escapes_and_wildcards_read_as_the_specification_says() {
        assert_eq!(pieces("a*b?c"), [t("a"), Any, t("b"), One, t("c")]);
        assert_eq!(pieces(r"a\*b\?c\\d"), [t(r"a*b?c\d")]);
        assert_eq!(pieces(r"bash\nx\"), [t(r"bash\nx\")]);
        assert_eq!(pieces(r"**x\\*"), [Any, t(r"x\"), Any]);
        assert_eq!(pieces(r"\\\*"), [t(r"\*")]);
        assert_eq!(pieces(""), []);
    }
}
