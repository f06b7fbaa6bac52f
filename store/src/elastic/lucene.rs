//! Rust regular expressions and literal text as Lucene's regexp syntax, the `regexp`
//! queries [`super`] builds for `--args` and `--path`. The store matches a Rust regular
//! expression anywhere in a value; Lucene's regexp matches the whole value, has no anchors,
//! reads more characters as operators (`@ & < > ~ #` and `"`), and lacks several of Rust's
//! constructs. So a pattern is parsed here into the constructs both can say, wrapped in `.*`
//! on each side it does not anchor, and written back in Lucene's syntax; what Lucene cannot
//! say, or would read otherwise, is refused with the reason. Literal text is escaped for a
//! regexp or for a `wildcard` pattern.

use super::refuse;
use crate::query::QueryError;

/// `text` literally in a `wildcard` pattern.
pub(super) fn wildcard_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `c` literally in a Lucene regexp. A backslash makes any character literal except the
/// letters Lucene reads as classes (`\d`, `\s`, `\w`), so punctuation, and only punctuation,
/// is escaped: every operator, including the optional ones (`@ & < > ~ #`) Elasticsearch
/// enables by default, and `"`, which opens a quoted string.
fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_punctuation() {
        out.push('\\');
    }
    out.push(c);
}

/// `text` literally in a Lucene regexp.
pub(super) fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        push_literal(&mut out, c);
    }
    out
}

/// A Rust regular expression searched anywhere in a value, as the Lucene regexp that matches
/// the whole value when it does: `.*(...).*`, without the `.*` on a side the pattern anchors
/// with `^` or `$`.
pub(super) fn unanchored(field: &'static str, pattern: &str) -> Result<String, QueryError> {
    let node = Parser {
        field,
        chars: pattern.chars().collect(),
        pos: 0,
    }
    .parse()?;
    let mut items = match node {
        Node::Concat(items) => items,
        other => vec![other],
    };
    let start = matches!(items.first(), Some(Node::Start));
    if start {
        items.remove(0);
    }
    let end = matches!(items.last(), Some(Node::End));
    if end {
        items.pop();
    }
    let mut out = String::new();
    if !start {
        out.push_str(".*");
    }
    out.push('(');
    emit(field, &Node::Concat(items), &mut out)?;
    out.push(')');
    if !end {
        out.push_str(".*");
    }
    Ok(out)
}

/// A parsed Rust regular expression, of the constructs Lucene's regexp can say.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(char),
    /// `.`: any character but a newline.
    Dot,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Group(Box<Node>),
    Concat(Vec<Node>),
    Alternation(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
    Start,
    End,
}

/// What the refusals say of Lucene's regexp.
const LUCENE: &str = "Elasticsearch's regular expressions (Lucene's)";

struct Parser {
    field: &'static str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn refuse(&self, reason: String) -> QueryError {
        refuse(self.field, reason)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    fn next(&mut self) -> Result<char, QueryError> {
        let c = self
            .peek()
            .ok_or_else(|| self.refuse("the regular expression ends too early".into()))?;
        self.pos += 1;
        Ok(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn parse(mut self) -> Result<Node, QueryError> {
        let node = self.alternation()?;
        if self.pos < self.chars.len() {
            return Err(self.refuse("an unbalanced `)`".into()));
        }
        Ok(node)
    }

    fn alternation(&mut self) -> Result<Node, QueryError> {
        let mut branches = vec![self.concat()?];
        while self.eat('|') {
            branches.push(self.concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Node::Alternation(branches)
        })
    }

    fn concat(&mut self) -> Result<Node, QueryError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantifiers(atom)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Concat(items)
        })
    }

    fn atom(&mut self) -> Result<Node, QueryError> {
        Ok(match self.next()? {
            '(' => {
                if self.eat('?') {
                    self.group_prefix()?;
                }
                let inner = self.alternation()?;
                if !self.eat(')') {
                    return Err(self.refuse("an unclosed `(`".into()));
                }
                Node::Group(Box::new(inner))
            }
            '[' => self.class()?,
            '.' => Node::Dot,
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => Node::Literal(self.escape()?),
            c @ ('*' | '+' | '?' | '{') => {
                return Err(self.refuse(format!("`{c}` repeats nothing")));
            }
            c => Node::Literal(c),
        })
    }

    /// After `(?`: a non-capturing or named group is a group to Lucene; flags are refused.
    fn group_prefix(&mut self) -> Result<(), QueryError> {
        if self.eat(':') {
            return Ok(());
        }
        // `(?P<name>` and `(?<name>`.
        self.eat('P');
        if self.eat('<') {
            while self.next()? != '>' {}
            return Ok(());
        }
        Err(self.refuse(format!(
            "flags such as (?i) or (?s): {LUCENE} have none; write both cases as a class ([Cc]url), and a newline as \\n beside . where it may occur ((.|\\n)*)"
        )))
    }

    fn quantifiers(&mut self, mut atom: Node) -> Result<Node, QueryError> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => (0, None),
                _ => return Ok(atom),
            };
            let (min, max) = if self.next()? == '{' {
                self.counted()?
            } else {
                (min, max)
            };
            // A lazy quantifier matches the values a greedy one matches: laziness moves where
            // a match ends, and a search asks only whether there is one.
            self.eat('?');
            atom = Node::Repeat {
                node: Box::new(atom),
                min,
                max,
            };
        }
    }

    /// `{n}`, `{n,}`, `{n,m}` (after the `{`, through the `}`).
    fn counted(&mut self) -> Result<(u32, Option<u32>), QueryError> {
        let mut text = String::new();
        loop {
            match self.next()? {
                '}' => break,
                c => text.push(c),
            }
        }
        let bad = || self.refuse(format!("`{{{text}}}` is not a repetition"));
        let num = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
        Ok(match text.split_once(',') {
            None => {
                let n = num(&text)?;
                (n, Some(n))
            }
            Some((lo, hi)) => {
                let lo = if lo.trim().is_empty() { 0 } else { num(lo)? };
                let hi = if hi.trim().is_empty() {
                    None
                } else {
                    Some(num(hi)?)
                };
                (lo, hi)
            }
        })
    }

    /// The character an escape stands for (after the `\`).
    fn escape(&mut self) -> Result<char, QueryError> {
        let c = self.next()?;
        Ok(match c {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                return Err(self.refuse(format!(
                    "`\\{c}` is a Unicode class in Rust's syntax, and {LUCENE} have no Unicode classes: write the characters you mean as a class, such as [0-9] for digits, [A-Za-z0-9_] for word characters, [ \\t\\n] for spaces"
                )))
            }
            'p' | 'P' => {
                return Err(self.refuse(format!(
                    "`\\{c}` names a Unicode property, and {LUCENE} have none: list the characters as a class ([A-Za-z])"
                )))
            }
            'b' | 'B' | 'A' | 'z' | '<' | '>' => {
                return Err(self.refuse(format!(
                    "`\\{c}` is an assertion, and {LUCENE} have none: they match whole values; begin the pattern with ^ or end it with $ to anchor it there"
                )))
            }
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'f' => '\x0c',
            'v' => '\x0b',
            'a' => '\x07',
            'x' => self.hex(2)?,
            'u' => self.hex(4)?,
            'U' => self.hex(8)?,
            c if c.is_ascii_punctuation() => c,
            c => {
                return Err(self.refuse(format!(
                    "`\\{c}` has no counterpart in {LUCENE}: write the character itself"
                )))
            }
        })
    }

    /// `\x7F`, `\x{7F}` and the like: `digits` hex digits, or any number in braces.
    fn hex(&mut self, digits: usize) -> Result<char, QueryError> {
        let mut text = String::new();
        if self.eat('{') {
            loop {
                match self.next()? {
                    '}' => break,
                    c => text.push(c),
                }
            }
        } else {
            for _ in 0..digits {
                text.push(self.next()?);
            }
        }
        u32::from_str_radix(&text, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.refuse(format!("`{text}` is not a character's hex code")))
    }

    /// A class, after its `[`: characters and ranges, negated or not. Nested classes, POSIX
    /// classes and set operations are refused.
    fn class(&mut self) -> Result<Node, QueryError> {
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.next()?;
            match (c, self.peek()) {
                (']', _) if !first => break,
                ('[', _) => {
                    return Err(self.refuse(format!(
                        "nested and POSIX classes ([[:alpha:]], [a[bc]]): {LUCENE} have flat classes only; list the characters in one class ([A-Za-z])"
                    )))
                }
                ('&', Some('&')) | ('-', Some('-')) | ('~', Some('~')) => {
                    return Err(self.refuse(format!(
                        "class operations (&&, --, ~~): {LUCENE} have none; list the characters that remain in one class"
                    )))
                }
                _ => {}
            }
            first = false;
            let lo = if c == '\\' { self.escape()? } else { c };
            if self.peek() == Some('-') && self.peek2() == Some('-') {
                return Err(self.refuse(format!(
                    "class operations (&&, --, ~~): {LUCENE} have none; list the characters that remain in one class"
                )));
            }
            let hi = if self.peek() == Some('-') && !matches!(self.peek2(), Some(']') | None) {
                self.pos += 1;
                match self.next()? {
                    '\\' => self.escape()?,
                    '[' => {
                        return Err(self.refuse(format!(
                            "a range ending in a class: {LUCENE} have flat classes only"
                        )))
                    }
                    h => h,
                }
            } else {
                lo
            };
            ranges.push((lo, hi));
        }
        Ok(Node::Class { negated, ranges })
    }
}

fn push_class_char(out: &mut String, c: char) {
    // In a Lucene class as outside: a backslash makes punctuation literal (`]`, `-`, `^`, `\`).
    push_literal(out, c);
}

/// `node` in Lucene's syntax.
fn emit(field: &'static str, node: &Node, out: &mut String) -> Result<(), QueryError> {
    match node {
        Node::Literal(c) => push_literal(out, *c),
        // Lucene's `.` is any character; Rust's leaves out the newline.
        Node::Dot => out.push_str("[^\n]"),
        Node::Class { negated, ranges } => {
            out.push('[');
            if *negated {
                out.push('^');
            }
            for (lo, hi) in ranges {
                push_class_char(out, *lo);
                if hi != lo {
                    out.push('-');
                    push_class_char(out, *hi);
                }
            }
            out.push(']');
        }
        Node::Group(inner) => {
            out.push('(');
            emit(field, inner, out)?;
            out.push(')');
        }
        // Lucene has no empty expression but `()`.
        Node::Concat(items) if items.is_empty() => out.push_str("()"),
        Node::Concat(items) => {
            for n in items {
                emit(field, n, out)?;
            }
        }
        Node::Alternation(branches) => {
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(field, b, out)?;
            }
        }
        Node::Repeat { node, min, max } => {
            let single = matches!(
                **node,
                Node::Literal(_) | Node::Dot | Node::Class { .. } | Node::Group(_)
            );
            if !single {
                out.push('(');
            }
            emit(field, node, out)?;
            if !single {
                out.push(')');
            }
            match (min, max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (n, None) => out.push_str(&format!("{{{n},}}")),
                (n, Some(m)) if n == m => out.push_str(&format!("{{{n}}}")),
                (n, Some(m)) => out.push_str(&format!("{{{n},{m}}}")),
            }
        }
        Node::Start | Node::End => {
            return Err(refuse(
                field,
                format!(
                    "{LUCENE} have no anchors: they match whole values. vigil anchors a pattern that begins with ^ or ends with $ outside any group or alternation; elsewhere ^ and $ cannot be said (write two searches for ^a|^b)"
                ),
            ))
        }
    }
    Ok(())
}
