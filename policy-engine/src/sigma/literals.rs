//! The literal strings a Sigma rule cannot match without: for each rule, clauses of lower-cased
//! strings such that any event the rule matches contains at least one literal of every clause
//! in its string fields (`Image|endswith: /cat` and `CommandLine|contains: /etc/` are two
//! clauses). The engine finds every literal of every rule in an event with one Aho-Corasick
//! pass and evaluates only the rules each of whose clauses has a literal present, so the cost
//! of an event grows with the rules it could match, not with the rules loaded.
//!
//! The analysis is conservative: where it cannot prove a literal is needed (`not`, regular
//! expressions, numbers, transforming modifiers such as `base64offset`), it gives no set and the
//! rule is evaluated on every event of its category.

use serde_yaml::Value;

use super::pattern::{pieces, Piece};

/// Where in a field a literal must sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// Anywhere.
    Anywhere,
    /// At the start of the field's value.
    Start,
    /// At its end.
    End,
    /// The whole value.
    Whole,
}

/// A literal a match needs: its text (lower-cased), the field it must occur in (`None`: any,
/// for keywords) and where in that field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Literal {
    /// The text, lower-cased.
    pub text: String,
    /// The field.
    pub field: Option<String>,
    /// Where in the field.
    pub anchor: Anchor,
}

/// Literals of which a match needs one.
pub type Clause = Vec<Literal>;

/// Clauses a match needs every one of; `None` when any event could match.
pub type Needed = Option<Vec<Clause>>;

/// Most clauses kept for a rule, the most selective: the engine tracks a rule's clauses in
/// the bits of one word, and a few clauses already rule out nearly every event.
pub const MAX_CLAUSES: usize = 8;

/// Modifiers under which a matching field value contains the written value (case aside).
const CONTAINING: [&str; 6] = [
    "contains",
    "startswith",
    "endswith",
    "all",
    "cased",
    "exists",
];

/// The set needed by one value of a field, under the field's modifiers.
fn value_needs(v: &Value, field: Option<&str>, modifiers: &[&str]) -> Needed {
    let s = match v {
        Value::String(s) => s.as_str(),
        // An integer is found as its decimal text, the whole value of its field (the engine's
        // haystack holds numbers so).
        Value::Number(n) if modifiers.is_empty() && field.is_some() => {
            return Some(vec![vec![Literal {
                text: n.as_i64()?.to_string(),
                field: field.map(str::to_string),
                anchor: Anchor::Whole,
            }]]);
        }
        _ => return None,
    };
    // A value with wildcards needs its longest literal run, anywhere; escapes are read as
    // the engine reads them (`\*` is a star, `\\` a backslash).
    let pieces = pieces(s);
    let wild = pieces.iter().any(|p| !matches!(p, Piece::Text(_)));
    let longest = pieces
        .into_iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(t),
            _ => None,
        })
        .max_by_key(String::len)
        .unwrap_or_default();
    // The prefilter ignores ASCII case only: a literal with other letters is not trusted.
    if longest.is_empty() || !longest.is_ascii() || modifiers.contains(&"exists") {
        return None;
    }
    // A keyword (no field) without wildcards must be the whole of one of the event's values,
    // as sigma-rust compares keywords.
    let anchor = match wild {
        true => Anchor::Anywhere,
        _ if modifiers.contains(&"contains") => Anchor::Anywhere,
        _ if modifiers.contains(&"startswith") => Anchor::Start,
        _ if modifiers.contains(&"endswith") => Anchor::End,
        _ => Anchor::Whole,
    };
    Some(vec![vec![Literal {
        text: longest.to_lowercase(),
        field: field.map(str::to_string),
        anchor,
    }]])
}

/// A field condition (`Image|endswith: [...]`): its values are alternatives, or all needed
/// under `|all`, of which the most selective stands for the rest.
fn field_needs(key: &str, v: &Value) -> Needed {
    let mut parts = key.split('|');
    let field = parts.next();
    let modifiers: Vec<&str> = parts.collect();
    if modifiers == ["re"] {
        return regex_needs(v, field);
    }
    if modifiers.iter().any(|m| !CONTAINING.contains(m)) {
        return None;
    }
    let values: Vec<&Value> = match v {
        Value::Sequence(seq) => seq.iter().collect(),
        other => vec![other],
    };
    if values.is_empty() {
        return None;
    }
    if modifiers.contains(&"all") {
        return both(values.iter().map(|v| value_needs(v, field, &modifiers)));
    }
    union(values.iter().map(|v| value_needs(v, field, &modifiers)))
}

/// A regular expression's necessary literals: every match starts with one of the prefixes the
/// regex-syntax extractor finds, when it finds a finite set of non-empty ones.
fn regex_needs(v: &Value, field: Option<&str>) -> Needed {
    use regex_syntax::hir::literal::Extractor;
    let Value::String(re) = v else { return None };
    let hir = regex_syntax::Parser::new().parse(re).ok()?;
    let seq = Extractor::new().extract(&hir);
    let lits = seq.literals()?;
    let mut out = Vec::new();
    for l in lits {
        let text = std::str::from_utf8(l.as_bytes()).ok()?;
        if text.is_empty() || !text.is_ascii() {
            return None;
        }
        out.push(Literal {
            text: text.to_lowercase(),
            field: field.map(str::to_string),
            anchor: Anchor::Anywhere,
        });
    }
    (!out.is_empty()).then_some(vec![out])
}

/// How selective a set is: its shortest literal's length (longer is rarer), fewer literals
/// breaking ties.
/// Fields whose values come from a handful that most events have: auditd's record `type`
/// (`SYSCALL`, `EXECVE`, `PATH`). A literal on one admits a rule on every record of that kind,
/// so another literal of the same selection is preferred.
const UNSELECTIVE_FIELDS: [&str; 1] = ["type"];

fn selectivity(n: &Clause) -> (bool, usize, std::cmp::Reverse<usize>) {
    let selective = n.iter().any(|l| {
        !l.field
            .as_deref()
            .is_some_and(|f| UNSELECTIVE_FIELDS.contains(&f))
    });
    (
        selective,
        n.iter().map(|s| s.text.len()).min().unwrap_or(0),
        std::cmp::Reverse(n.len()),
    )
}

/// All of `parts` hold: every part's clauses, the most selective [`MAX_CLAUSES`] of them (a
/// part without any needs nothing).
fn both(parts: impl Iterator<Item = Needed>) -> Needed {
    let mut clauses: Vec<Clause> = parts.flatten().flatten().collect();
    if clauses.is_empty() {
        return None;
    }
    clauses.sort_by_key(|c| std::cmp::Reverse(selectivity(c)));
    clauses.dedup();
    // A clause nearly every event has (auditd's record type, a one- or two-letter literal
    // searched for) filters little and is found on every event, where the engine walks the
    // rules it admits: kept only when nothing better is there. A short value a field must
    // equal (`euid: 33`) is found only where the field is that value, so it is kept.
    let (strong, weak): (Vec<Clause>, Vec<Clause>) = clauses.into_iter().partition(|c| {
        let (selective, shortest, _) = selectivity(c);
        let whole_values = c
            .iter()
            .all(|l| l.anchor == Anchor::Whole && l.field.is_some());
        selective && (shortest >= 3 || whole_values)
    });
    let mut clauses = if strong.is_empty() { weak } else { strong };
    clauses.truncate(MAX_CLAUSES);
    Some(clauses)
}

/// One of `parts` holds: every part must need something, and a match needs a literal of one
/// clause made of each part's most selective clause.
fn union(parts: impl Iterator<Item = Needed>) -> Needed {
    let mut parts: Vec<Needed> = parts.collect();
    if parts.len() == 1 {
        return parts.pop().flatten();
    }
    let mut all = Vec::new();
    for p in parts {
        all.extend(p?.into_iter().max_by_key(selectivity)?);
    }
    if all.is_empty() {
        None
    } else {
        Some(vec![all])
    }
}

/// A search identifier's definition: a map (fields ANDed), a list of maps (ORed) or keywords.
pub fn selection_needs(v: &Value) -> Needed {
    selection_needs_in(v, None)
}

/// [`selection_needs`], of field `only`'s literals alone when given: what a match needs of
/// that field, where the other fields' literals would have been preferred to it.
fn selection_needs_in(v: &Value, only: Option<&str>) -> Needed {
    let keywords = |v: &Value| match only {
        None => value_needs(v, None, &[]),
        // Keywords name no field.
        Some(_) => None,
    };
    match v {
        Value::Mapping(m) => both(m.iter().map(|(k, v)| match k {
            Value::String(k) if only.is_none_or(|f| k.split('|').next() == Some(f)) => {
                field_needs(k, v)
            }
            _ => None,
        })),
        Value::Sequence(seq) => union(seq.iter().map(|item| match item {
            Value::Mapping(_) => selection_needs_in(item, only),
            other => keywords(other),
        })),
        other => keywords(other),
    }
}

/// The values of `field` one of which a rule's `detection` needs that field to be the whole of
/// for a match (auditd's record `type`), when its condition needs one.
pub fn needed_values(detection: &serde_yaml::Mapping, field: &str) -> Option<Vec<String>> {
    let clauses = detection_needs(detection, |v| selection_needs_in(v, Some(field)))?;
    let clause = clauses.into_iter().find(|c| {
        !c.is_empty()
            && c.iter()
                .all(|l| l.anchor == Anchor::Whole && l.field.as_deref() == Some(field))
    })?;
    let mut values: Vec<String> = clause.into_iter().map(|l| l.text).collect();
    values.sort_unstable();
    values.dedup();
    Some(values)
}

/// What a rule's `detection` needs, each search identifier's needs given by `selection`.
pub fn detection_needs(
    detection: &serde_yaml::Mapping,
    selection: impl Fn(&Value) -> Needed,
) -> Needed {
    let selections: Vec<(String, Needed)> = detection
        .iter()
        .filter_map(|(k, v)| {
            let k = k.as_str()?;
            // Every other key is a search identifier to sigma-rust, `timeframe` included
            // (`1 of them` counts it): leaving it out would need less than a match does.
            (k != "condition").then(|| (k.to_string(), selection(v)))
        })
        .collect();
    match detection.get("condition")? {
        Value::String(c) => condition_needs(c, &selections),
        // A list of conditions is any of them.
        Value::Sequence(cs) => {
            let mut all = Vec::new();
            for c in cs {
                all.extend(condition_needs(c.as_str()?, &selections)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// The condition expression's set, given each search identifier's.
pub fn condition_needs(condition: &str, selections: &[(String, Needed)]) -> Needed {
    let tokens = tokenize(condition);
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
        selections,
    };
    let n = p.or();
    if p.at == tokens.len() {
        n
    } else {
        None
    }
}

fn tokenize(s: &str) -> Vec<String> {
    s.replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

struct Parser<'a> {
    tokens: &'a [String],
    at: usize,
    selections: &'a [(String, Needed)],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(|s| s.as_str())
    }

    fn or(&mut self) -> Needed {
        let mut parts = vec![self.and()];
        while self.peek() == Some("or") {
            self.at += 1;
            parts.push(self.and());
        }
        union(parts.into_iter())
    }

    fn and(&mut self) -> Needed {
        let mut parts = vec![self.not()];
        while self.peek() == Some("and") {
            self.at += 1;
            parts.push(self.not());
        }
        both(parts.into_iter())
    }

    fn not(&mut self) -> Needed {
        if self.peek() == Some("not") {
            self.at += 1;
            self.not();
            return None;
        }
        self.atom()
    }

    fn matching(&self, pattern: &str) -> Vec<Needed> {
        let re = |name: &str| match pattern.strip_suffix('*') {
            _ if pattern == "them" => true,
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        self.selections
            .iter()
            .filter(|(n, _)| re(n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn atom(&mut self) -> Needed {
        let t = self.peek().map(str::to_string)?;
        self.at += 1;
        match t.as_str() {
            "(" => {
                let n = self.or();
                if self.peek() == Some(")") {
                    self.at += 1;
                }
                n
            }
            "1" | "any" | "all" if self.peek() == Some("of") => {
                self.at += 1;
                let pattern = self.peek().unwrap_or("").to_string();
                self.at += 1;
                let parts = self.matching(&pattern);
                if parts.is_empty() {
                    return None;
                }
                if t == "all" {
                    both(parts.into_iter())
                } else {
                    union(parts.into_iter())
                }
            }
            name => self
                .selections
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(detection: &str) -> Needed {
        let d: Value = serde_yaml::from_str(detection).unwrap();
        detection_needs(d.as_mapping().unwrap(), selection_needs)
    }

    /// The record types a rule needs are found where its other literals were preferred to
    /// them, and only where every way to match needs one.
    #[test]
    fn a_rules_record_types_are_what_every_match_needs() {
        let types = |detection: &str| {
            let d: Value = serde_yaml::from_str(detection).unwrap();
            needed_values(d.as_mapping().unwrap(), "type")
        };
        let one = |t: &str| Some(vec![t.to_string()]);
        assert_eq!(
            types("cmd:\n  type: EXECVE\n  a0|endswith: iptables\nk:\n  - '--to-ports 42'\ncondition: cmd and k"),
            one("execve")
        );
        assert_eq!(
            types("a:\n  type: 'SYSCALL'\nb:\n  type: PATH\ncondition: 1 of them"),
            Some(vec!["path".to_string(), "syscall".to_string()])
        );
        assert_eq!(
            types("a:\n  - type: EXECVE\n    a0: x\n  - type: EXECVE\n    a1: y\ncondition: a"),
            one("execve")
        );
        assert_eq!(
            types("a:\n  type: EXECVE\nk:\n  - x\ncondition: a or k"),
            None
        );
        assert_eq!(types("a:\n  type: EXECVE\ncondition: not a"), None);
        assert_eq!(types("a:\n  type|contains: EXEC\ncondition: a"), None);
        assert_eq!(types("k:\n  - EXECVE\ncondition: k"), None);
    }

    #[test]
    fn a_selection_needs_one_of_its_most_selective_fields_values() {
        let n = needs(
            "selection:\n  Image|endswith: ['/base64', '/b64']\n  CommandLine|contains: ' -d'\ncondition: selection",
        )
        .unwrap();
        let texts: Vec<Vec<_>> = n
            .iter()
            .map(|c| c.iter().map(|l| (l.text.as_str(), l.anchor)).collect())
            .collect();
        assert_eq!(
            texts,
            [
                vec![("/base64", Anchor::End), ("/b64", Anchor::End)],
                vec![(" -d", Anchor::Anywhere)]
            ]
        );
        assert_eq!(n[0][0].field.as_deref(), Some("Image"));
    }

    #[test]
    fn negations_need_nothing_and_regexes_their_prefixes() {
        // A regex needs the prefixes every match starts with; one without any needs nothing.
        let re = needs("selection:\n  CommandLine|re: '-(W|R)x.*b'\ncondition: selection").unwrap();
        let texts: Vec<_> = re[0].iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["-rx", "-wx"]);
        assert_eq!(
            needs("selection:\n  CommandLine|re: '.*b'\ncondition: selection"),
            None
        );
        let n = needs(
            "selection:\n  Image|endswith: '/nohup'\nfilter:\n  CommandLine|contains: 'x'\ncondition: selection and not filter",
        );
        assert_eq!(n.unwrap()[0][0].text, "/nohup");
        assert_eq!(needs("filter:\n  Image: '/a'\ncondition: not filter"), None);
    }

    #[test]
    fn one_of_is_a_union_and_all_of_picks_one() {
        let d =
            "selection_a:\n  Image|endswith: '/aa'\nselection_b:\n  CommandLine|contains: 'bbbb'\n";
        let any = needs(&format!("{d}condition: 1 of selection_*")).unwrap();
        assert_eq!(any.len(), 1);
        assert_eq!(any[0].len(), 2);
        let all = needs(&format!("{d}condition: all of selection_*")).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0][0].text, "bbbb");
    }

    /// A short value a field must equal is found only where the field has it: it is kept
    /// beside a stronger clause, so that a web server's uid, not every exec, admits the rule.
    /// A short literal searched for anywhere, or a record type, is not.
    #[test]
    fn a_short_whole_value_stays_a_clause_and_a_short_searched_literal_does_not() {
        let n = needs(
            "selection:
  type: 'SYSCALL'
  SYSCALL: ['execve', 'execveat']
  euid: 33
condition: selection",
        )
        .unwrap();
        let clauses: Vec<Vec<(&str, &str)>> = n
            .iter()
            .map(|c| {
                c.iter()
                    .map(|l| (l.field.as_deref().unwrap_or(""), l.text.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(
            clauses,
            [
                vec![("SYSCALL", "execve"), ("SYSCALL", "execveat")],
                vec![("euid", "33")]
            ]
        );
        let n = needs(
            "selection:
  Image|endswith: '/curl'
  CommandLine|contains: '-T'
condition: selection",
        )
        .unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0][0].text, "/curl");
    }

    #[test]
    fn wildcards_keep_their_longest_literal_run() {
        let n = needs("selection:\n  CommandLine: '*wget *http*'\ncondition: selection").unwrap();
        assert_eq!(
            (n[0][0].text.as_str(), n[0][0].anchor),
            ("wget ", Anchor::Anywhere)
        );
    }
}
