//! The `regexp` query of the Elasticsearch test server (`elastic_query.rs`, which includes
//! this file): Lucene's regexp syntax, parsed with the default flags of Elasticsearch's
//! `regexp` query, and compiled to a Thompson automaton matched against the whole value. The
//! crates that include the server cannot all use the `regex` crate, and Lucene's syntax is not
//! Rust's anyway. The parse refuses as a strict cluster would (400 `query_shard_exception`),
//! and refuses too Lucene's optional operators (`@ & < > ~ #`) unescaped, which a real cluster
//! reads as operators and vigil's queries never use; a regexp whose automaton grows too large
//! is a 400 `too_complex_to_determinize_exception`.

use super::EsError;

/// A Lucene regular expression, parsed.
#[derive(Debug, Clone)]
enum Re {
    /// One character of these ranges (or of none of them).
    Set {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Concat(Vec<Re>),
    Alternation(Vec<Re>),
    Repeat(Box<Re>, u32, Option<u32>),
}

fn any_char() -> Re {
    Re::Set {
        ranges: Vec::new(),
        negated: true,
    }
}

fn one_char(c: char) -> Re {
    Re::Set {
        ranges: vec![(c, c)],
        negated: false,
    }
}

/// Lucene's `RegExp` grammar, with the default flags of Elasticsearch's `regexp` query.
struct Lucene {
    chars: Vec<char>,
    pos: usize,
}

fn bad_regexp(reason: String) -> EsError {
    EsError::shard(format!("failed to create query: {reason}"))
}

impl Lucene {
    fn more(&self) -> bool {
        self.pos < self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn next(&mut self) -> Result<char, EsError> {
        let c = self.peek().ok_or_else(|| {
            bad_regexp(format!("unexpected end-of-string at position {}", self.pos))
        })?;
        self.pos += 1;
        Ok(c)
    }

    fn optional(&self, op: char, name: &str) -> EsError {
        bad_regexp(format!(
            "`{op}` at position {} is Lucene's optional {name} operator: vigil's queries never use it, and a literal {op} must be escaped (\\{op})",
            self.pos
        ))
    }

    fn union(&mut self) -> Result<Re, EsError> {
        let mut branches = vec![self.inter()?];
        while self.eat('|') {
            branches.push(self.inter()?);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Re::Alternation(branches)
        })
    }

    fn inter(&mut self) -> Result<Re, EsError> {
        let e = self.concat()?;
        if self.peek() == Some('&') {
            return Err(self.optional('&', "INTERSECTION"));
        }
        Ok(e)
    }

    fn concat(&mut self) -> Result<Re, EsError> {
        // As Lucene: a concatenation has one expression at least, whatever its first character
        // (`a|)` reads the `)` as a character).
        let mut items = vec![self.repeat()?];
        while self.more() && !matches!(self.peek(), Some(')' | '|' | '&')) {
            items.push(self.repeat()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Re::Concat(items)
        })
    }

    fn repeat(&mut self) -> Result<Re, EsError> {
        let mut e = self.complement()?;
        loop {
            e = if self.eat('?') {
                Re::Repeat(Box::new(e), 0, Some(1))
            } else if self.eat('*') {
                Re::Repeat(Box::new(e), 0, None)
            } else if self.eat('+') {
                Re::Repeat(Box::new(e), 1, None)
            } else if self.eat('{') {
                let n = self.number()?;
                let m = if self.eat(',') {
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        Some(self.number()?)
                    } else {
                        None
                    }
                } else {
                    Some(n)
                };
                if !self.eat('}') {
                    return Err(bad_regexp(format!(
                        "expected '}}' at position {}",
                        self.pos
                    )));
                }
                if m.is_some_and(|m| m < n) {
                    return Err(bad_regexp(format!("invalid repetition {{{n},{m:?}}}")));
                }
                Re::Repeat(Box::new(e), n, m)
            } else {
                return Ok(e);
            };
        }
    }

    fn number(&mut self) -> Result<u32, EsError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse()
            .map_err(|_| bad_regexp(format!("integer expected at position {start}")))
    }

    fn complement(&mut self) -> Result<Re, EsError> {
        if self.peek() == Some('~') {
            return Err(self.optional('~', "COMPLEMENT"));
        }
        self.class()
    }

    fn class(&mut self) -> Result<Re, EsError> {
        if !self.eat('[') {
            return self.simple();
        }
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        loop {
            if let Some(set) = self.predefined()? {
                match set {
                    Re::Set {
                        ranges: r,
                        negated: false,
                    } => ranges.extend(r),
                    _ => {
                        return Err(bad_regexp(
                            "a negated class (\\D, \\S, \\W) inside brackets: the test server does not evaluate it".into(),
                        ))
                    }
                }
            } else {
                let lo = self.char_exp()?;
                let hi = if self.eat('-') { self.char_exp()? } else { lo };
                if hi < lo {
                    return Err(bad_regexp(format!(
                        "invalid range: from ({lo}) cannot be > to ({hi})"
                    )));
                }
                ranges.push((lo, hi));
            }
            if !self.more() || self.peek() == Some(']') {
                break;
            }
        }
        if !self.eat(']') {
            return Err(bad_regexp(format!("expected ']' at position {}", self.pos)));
        }
        Ok(Re::Set { ranges, negated })
    }

    /// Lucene's `\d \s \w` and their negations (after checking for the backslash).
    fn predefined(&mut self) -> Result<Option<Re>, EsError> {
        if self.peek() != Some('\\') {
            return Ok(None);
        }
        let Some(c) = self.chars.get(self.pos + 1).copied() else {
            return Ok(None);
        };
        let ranges = match c.to_ascii_lowercase() {
            'd' => vec![('0', '9')],
            's' => vec![(' ', ' '), ('\t', '\r')],
            'w' => vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
            _ => return Ok(None),
        };
        self.pos += 2;
        Ok(Some(Re::Set {
            ranges,
            negated: c.is_ascii_uppercase(),
        }))
    }

    fn char_exp(&mut self) -> Result<char, EsError> {
        if self.eat('\\') {
            return self.next();
        }
        self.next()
    }

    fn simple(&mut self) -> Result<Re, EsError> {
        if let Some(set) = self.predefined()? {
            return Ok(set);
        }
        match self.peek() {
            Some('.') => {
                self.pos += 1;
                Ok(any_char())
            }
            Some('#') => Err(self.optional('#', "EMPTY")),
            Some('@') => Err(self.optional('@', "ANYSTRING")),
            Some('<') => Err(self.optional('<', "INTERVAL")),
            Some('"') => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '"') {
                    self.pos += 1;
                }
                let text: Vec<Re> = self.chars[start..self.pos]
                    .iter()
                    .map(|c| one_char(*c))
                    .collect();
                if !self.eat('"') {
                    return Err(bad_regexp(format!(
                        "expected '\"' at position {}",
                        self.pos
                    )));
                }
                Ok(Re::Concat(text))
            }
            Some('(') => {
                self.pos += 1;
                if self.eat(')') {
                    return Ok(Re::Concat(Vec::new()));
                }
                let e = self.union()?;
                if !self.eat(')') {
                    return Err(bad_regexp(format!("expected ')' at position {}", self.pos)));
                }
                Ok(e)
            }
            _ => Ok(one_char(self.char_exp()?)),
        }
    }
}

#[derive(Debug, Clone)]
enum Inst {
    Set {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled Lucene regexp: a Thompson automaton run over the whole value.
#[derive(Debug, Clone)]
pub struct Program(Vec<Inst>);

/// Most instructions a regexp compiles to (Elasticsearch's bound is on determinized states).
const MAX_PROGRAM: usize = 100_000;

impl Program {
    pub fn new(pattern: &str) -> Result<Program, EsError> {
        let mut p = Lucene {
            chars: pattern.chars().collect(),
            pos: 0,
        };
        let re = p.union()?;
        if p.more() {
            return Err(bad_regexp(format!(
                "end-of-string expected at position {}",
                p.pos
            )));
        }
        let mut prog = Vec::new();
        emit(&re, &mut prog)?;
        prog.push(Inst::Match);
        Ok(Program(prog))
    }

    pub fn is_match(&self, s: &str) -> bool {
        let prog = &self.0;
        let add = |pc: usize, list: &mut Vec<usize>, on: &mut Vec<bool>| {
            let mut stack = vec![pc];
            while let Some(pc) = stack.pop() {
                if std::mem::replace(&mut on[pc], true) {
                    continue;
                }
                match prog[pc] {
                    Inst::Jmp(to) => stack.push(to),
                    Inst::Split(a, b) => {
                        stack.push(b);
                        stack.push(a);
                    }
                    _ => list.push(pc),
                }
            }
        };
        let mut on = vec![false; prog.len()];
        let mut now = Vec::new();
        add(0, &mut now, &mut on);
        for c in s.chars() {
            let mut on = vec![false; prog.len()];
            let mut next = Vec::new();
            for &pc in &now {
                if let Inst::Set { ranges, negated } = &prog[pc] {
                    if ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated {
                        add(pc + 1, &mut next, &mut on);
                    }
                }
            }
            if next.is_empty() {
                return false;
            }
            now = next;
        }
        now.iter().any(|&pc| matches!(prog[pc], Inst::Match))
    }
}

fn emit(re: &Re, prog: &mut Vec<Inst>) -> Result<(), EsError> {
    if prog.len() > MAX_PROGRAM {
        return Err(EsError {
            status: 400,
            kind: "too_complex_to_determinize_exception",
            reason: "the regexp is too large for the test server".into(),
        });
    }
    match re {
        Re::Set { ranges, negated } => prog.push(Inst::Set {
            ranges: ranges.clone(),
            negated: *negated,
        }),
        Re::Concat(items) => {
            for r in items {
                emit(r, prog)?;
            }
        }
        Re::Alternation(branches) => {
            let mut jumps = Vec::new();
            for (i, b) in branches.iter().enumerate() {
                if i + 1 == branches.len() {
                    emit(b, prog)?;
                } else {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    emit(b, prog)?;
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let here = prog.len();
                    prog[split] = Inst::Split(split + 1, here);
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jmp(end);
            }
        }
        Re::Repeat(r, min, max) => {
            for _ in 0..*min {
                emit(r, prog)?;
            }
            match max {
                None => {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    emit(r, prog)?;
                    prog.push(Inst::Jmp(split));
                    let end = prog.len();
                    prog[split] = Inst::Split(split + 1, end);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(prog.len());
                        prog.push(Inst::Split(0, 0));
                        emit(r, prog)?;
                    }
                    let end = prog.len();
                    for s in splits {
                        prog[s] = Inst::Split(s + 1, end);
                    }
                }
            }
        }
    }
    Ok(())
}
