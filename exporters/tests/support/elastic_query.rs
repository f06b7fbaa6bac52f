//! The query DSL of the Elasticsearch test server (`elastic.rs`, which includes this file): a
//! `_search` or `_count` body's query, checked as a strict cluster checks it, then evaluated
//! over the stored documents with Elasticsearch's semantics.
//!
//! Clauses: `bool` (`filter`, `must`, `should`, `must_not`, `minimum_should_match`),
//! `match_all`, `term`, `terms`, `range`, `prefix`, `wildcard`, `regexp` and `exists`: what
//! `vigil_store::elastic` emits. Anything else is a 400 `parsing_exception`, as an unknown key
//! is; a field no template maps, or a clause its type does not take (a `wildcard` on an `ip`),
//! a 400 `query_shard_exception`. Stricter than a real cluster in two ways, each of which would
//! hide a translation bug there: a field outside `vigil.*` that the template does not map is
//! refused (a real cluster matches nothing), and Lucene's optional regexp operators
//! (`@ & < > ~ #`), which a real cluster reads as operators, are refused unescaped.
//!
//! The semantics are Elasticsearch's, not the store's: dotted fields through nested objects, an
//! array matching if one of its values does, a keyword longer than its `ignore_above` not
//! indexed, an `ip` term reading a CIDR range (IPv4 as IPv4-mapped IPv6, as Lucene keeps it),
//! a `date` field at millisecond resolution (a `date_nanos` at nanoseconds), wildcards with `*`,
//! `?` and `\`, and regexps in Lucene's syntax matched against the whole value. The regexps run
//! on an automaton of their own (`elastic_regexp.rs`): the crates that include this server cannot all use the
//! `regex` crate, and Lucene's syntax is not Rust's anyway.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

// Beside this file whoever includes it: a path relative to this file's directory.
#[path = "elastic_regexp.rs"]
mod regexp;

use regexp::Program;

/// A refusal, as Elasticsearch writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct EsError {
    /// The HTTP status.
    pub status: u16,
    /// `parsing_exception`, `query_shard_exception`, ...
    pub kind: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl EsError {
    /// A body the parser refuses.
    pub fn parsing(reason: impl Into<String>) -> EsError {
        EsError {
            status: 400,
            kind: "parsing_exception",
            reason: reason.into(),
        }
    }

    /// A clause the mappings refuse.
    pub fn shard(reason: impl Into<String>) -> EsError {
        EsError {
            status: 400,
            kind: "query_shard_exception",
            reason: reason.into(),
        }
    }

    /// The response body.
    pub fn body(&self) -> String {
        let cause = json!({"type": self.kind, "reason": self.reason});
        json!({"error": {"root_cause": [cause], "type": self.kind, "reason": self.reason}, "status": self.status})
            .to_string()
    }
}

/// A field's mapping in the searched indices.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldType {
    /// `keyword`, `long`, `date`, `ip`, `object`, ...
    pub ty: String,
    /// Longer keywords are not indexed.
    pub ignore_above: Option<usize>,
}

impl FieldType {
    fn is_text(&self) -> bool {
        matches!(
            self.ty.as_str(),
            "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text"
        )
    }

    fn is_integer(&self) -> bool {
        matches!(
            self.ty.as_str(),
            "long" | "integer" | "short" | "byte" | "unsigned_long"
        )
    }

    fn is_float(&self) -> bool {
        matches!(
            self.ty.as_str(),
            "double" | "float" | "half_float" | "scaled_float"
        )
    }

    fn is_date(&self) -> bool {
        matches!(self.ty.as_str(), "date" | "date_nanos")
    }
}

/// What the searched indices make of a field name.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Mapped, with this type.
    Mapped(FieldType),
    /// One the template's dynamic mapping would map on first sight, which no document has
    /// brought yet: it matches nothing, as in Elasticsearch.
    NotYet,
    /// One no document can hold.
    Unmapped,
}

/// A field a clause reads.
#[derive(Debug, Clone)]
pub struct Field {
    name: String,
    ty: FieldType,
}

/// A value as a field of its type holds it, comparable to a query's.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Scalar {
    /// Keywords.
    Str(String),
    /// Integer types.
    Int(i128),
    /// Floating-point types.
    Float(f64),
    /// Dates at the field's resolution (ms for `date`, ns for `date_nanos`).
    Time(u64),
    /// An address as 16 bytes (IPv4-mapped for IPv4).
    Ip([u8; 16]),
    /// A CIDR range of a term: the address and its prefix length over 128 bits.
    Net([u8; 16], u8),
    /// Booleans.
    Bool(bool),
}

/// A range's comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Gte,
    Gt,
    Lte,
    Lt,
}

/// A query, checked against the mappings.
#[derive(Debug)]
pub enum Clause {
    /// Every document.
    MatchAll,
    /// No document: a clause on a field not mapped yet.
    Nothing,
    /// `bool`.
    Bool {
        must: Vec<Clause>,
        should: Vec<Clause>,
        must_not: Vec<Clause>,
        minimum_should_match: usize,
    },
    /// `term` and `terms`.
    Term {
        field: Field,
        values: Vec<Scalar>,
        case_insensitive: bool,
    },
    /// `range`.
    Range {
        field: Field,
        bounds: Vec<(Op, Scalar)>,
    },
    /// `prefix`.
    Prefix {
        field: Field,
        prefix: String,
        case_insensitive: bool,
    },
    /// `wildcard`.
    Wildcard {
        field: Field,
        pattern: Vec<Wild>,
        case_insensitive: bool,
    },
    /// `regexp`.
    Regexp { field: Field, program: Program },
    /// `exists`.
    Exists { field: Field },
}

/// How a field name resolves.
pub type Resolve<'a> = &'a dyn Fn(&str) -> Lookup;

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "START_OBJECT",
        Value::Array(_) => "START_ARRAY",
        Value::String(_) => "VALUE_STRING",
        Value::Number(_) => "VALUE_NUMBER",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Null => "VALUE_NULL",
    }
}

/// Refuses any key of `o` outside `allowed`, as Elasticsearch's parsers do.
fn only_keys(query: &str, o: &Map<String, Value>, allowed: &[&str]) -> Result<(), EsError> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(EsError::parsing(format!(
            "[{query}] query does not support [{k}]"
        ))),
        None => Ok(()),
    }
}

/// The one field of a leaf query (`{"term": {"field": ...}}`) and what it says of it.
fn one_field<'v>(query: &str, body: &'v Value) -> Result<(&'v str, &'v Value), EsError> {
    let o = body
        .as_object()
        .ok_or_else(|| EsError::parsing(format!("[{query}] query malformed, no start_object")))?;
    let mut fields = o.iter().filter(|(k, _)| k.as_str() != "boost");
    let (name, v) = fields
        .next()
        .ok_or_else(|| EsError::parsing(format!("[{query}] query has no field")))?;
    if let Some((other, _)) = fields.next() {
        return Err(EsError::parsing(format!(
            "[{query}] query doesn't support multiple fields, found [{name}] and [{other}]"
        )));
    }
    Ok((name, v))
}

/// A leaf's value and options: `"value"` alone, or an object of `value_key` and `options`.
fn leaf<'v>(
    query: &str,
    v: &'v Value,
    value_keys: &[&str],
    options: &[&str],
) -> Result<(&'v Value, &'v Map<String, Value>), EsError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match v.as_object() {
        None => Ok((v, EMPTY.get_or_init(Map::new))),
        Some(o) => {
            let allowed: Vec<&str> = value_keys.iter().chain(options).copied().collect();
            only_keys(query, o, &allowed)?;
            let value = value_keys
                .iter()
                .find_map(|k| o.get(*k))
                .ok_or_else(|| EsError::parsing(format!("[{query}] query has no value")))?;
            Ok((value, o))
        }
    }
}

fn flag(query: &str, o: &Map<String, Value>, key: &str) -> Result<bool, EsError> {
    match o.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(EsError::parsing(format!(
            "[{query}] {key} must be a boolean, not {v}"
        ))),
    }
}

fn resolve(name: &str, lookup: Resolve) -> Result<Option<Field>, EsError> {
    match lookup(name) {
        Lookup::Mapped(ty) => Ok(Some(Field {
            name: name.to_string(),
            ty,
        })),
        Lookup::NotYet => Ok(None),
        Lookup::Unmapped => Err(EsError::shard(format!(
            "failed to create query: [{name}] is not a field the index template maps: a strict cluster refuses documents holding it, so no document can match; query an ECS field vigil writes"
        ))),
    }
}

/// Checks and compiles `q` (a query clause).
pub fn compile(q: &Value, lookup: Resolve) -> Result<Clause, EsError> {
    let o = q
        .as_object()
        .ok_or_else(|| EsError::parsing(format!("a query must be an object, not {q}")))?;
    let mut keys = o.iter();
    let (name, body) = keys
        .next()
        .ok_or_else(|| EsError::parsing("query malformed, empty clause"))?;
    if let Some((other, _)) = keys.next() {
        return Err(EsError::parsing(format!(
            "[{name}] malformed query, expected [END_OBJECT] but found [FIELD_NAME] ({other})"
        )));
    }
    match name.as_str() {
        "match_all" => {
            let b = body
                .as_object()
                .ok_or_else(|| EsError::parsing("[match_all] query malformed"))?;
            only_keys("match_all", b, &["boost"])?;
            Ok(Clause::MatchAll)
        }
        "bool" => compile_bool(body, lookup),
        "term" => {
            let (field, v) = one_field("term", body)?;
            let (value, opts) = leaf("term", v, &["value"], &["case_insensitive", "boost"])?;
            let ci = flag("term", opts, "case_insensitive")?;
            term(field, std::slice::from_ref(value), ci, lookup)
        }
        "terms" => {
            let (field, v) = one_field("terms", body)?;
            let values = v.as_array().ok_or_else(|| {
                EsError::parsing(format!(
                    "[terms] query requires an array of values for [{field}]"
                ))
            })?;
            term(field, values, false, lookup)
        }
        "range" => range(body, lookup),
        "prefix" => {
            let (name, v) = one_field("prefix", body)?;
            let (value, opts) = leaf(
                "prefix",
                v,
                &["value"],
                &["case_insensitive", "boost", "rewrite"],
            )?;
            let ci = flag("prefix", opts, "case_insensitive")?;
            let Some(field) = text_field("prefix", name, lookup)? else {
                return Ok(Clause::Nothing);
            };
            Ok(Clause::Prefix {
                field,
                prefix: string("prefix", value)?,
                case_insensitive: ci,
            })
        }
        "wildcard" => {
            let (name, v) = one_field("wildcard", body)?;
            let (value, opts) = leaf(
                "wildcard",
                v,
                &["value", "wildcard"],
                &["case_insensitive", "boost", "rewrite"],
            )?;
            let ci = flag("wildcard", opts, "case_insensitive")?;
            let Some(field) = text_field("wildcard", name, lookup)? else {
                return Ok(Clause::Nothing);
            };
            Ok(Clause::Wildcard {
                field,
                pattern: wildcard(&string("wildcard", value)?),
                case_insensitive: ci,
            })
        }
        "regexp" => {
            let (name, v) = one_field("regexp", body)?;
            let (value, opts) = leaf(
                "regexp",
                v,
                &["value"],
                &[
                    "flags",
                    "case_insensitive",
                    "max_determinized_states",
                    "boost",
                    "rewrite",
                ],
            )?;
            match opts.get("flags").map(|f| f.as_str()) {
                None | Some(Some("ALL")) => {}
                Some(other) => {
                    return Err(EsError::parsing(format!(
                        "[regexp] flags {other:?}: the test server reads regexps with Elasticsearch's default flags (ALL) only"
                    )))
                }
            }
            if flag("regexp", opts, "case_insensitive")? {
                return Err(EsError::parsing(
                    "[regexp] case_insensitive: the test server does not evaluate it",
                ));
            }
            let pattern = string("regexp", value)?;
            let program = Program::new(&pattern)?;
            let Some(field) = text_field("regexp", name, lookup)? else {
                return Ok(Clause::Nothing);
            };
            Ok(Clause::Regexp { field, program })
        }
        "exists" => {
            let b = body
                .as_object()
                .ok_or_else(|| EsError::parsing("[exists] query malformed"))?;
            only_keys("exists", b, &["field", "boost"])?;
            let name = b
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| EsError::parsing("[exists] must be provided with a [field]"))?;
            Ok(match resolve(name, lookup)? {
                Some(field) => Clause::Exists { field },
                None => Clause::Nothing,
            })
        }
        other => Err(EsError::parsing(format!("unknown query [{other}]"))),
    }
}

fn compile_bool(body: &Value, lookup: Resolve) -> Result<Clause, EsError> {
    let b = body
        .as_object()
        .ok_or_else(|| EsError::parsing("[bool] query malformed"))?;
    only_keys(
        "bool",
        b,
        &[
            "must",
            "filter",
            "should",
            "must_not",
            "minimum_should_match",
            "boost",
        ],
    )?;
    let list = |key: &str| -> Result<Vec<Clause>, EsError> {
        match b.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|c| compile(c, lookup)).collect(),
            Some(c @ Value::Object(_)) => Ok(vec![compile(c, lookup)?]),
            Some(v) => Err(EsError::parsing(format!(
                "[bool] query does not support [{}] for [{key}]",
                json_type(v)
            ))),
        }
    };
    // `filter` and `must` differ in scoring alone, which no test reads.
    let mut must = list("must")?;
    must.extend(list("filter")?);
    let should = list("should")?;
    let must_not = list("must_not")?;
    let minimum_should_match = match b.get("minimum_should_match") {
        // Elasticsearch's default: one of the `should` clauses when nothing else must match.
        None => usize::from(!should.is_empty() && must.is_empty()),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| EsError::parsing(format!("[bool] minimum_should_match {n}")))?,
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| EsError::parsing(format!("[bool] minimum_should_match [{s}]")))?,
        Some(v) => return Err(EsError::parsing(format!("[bool] minimum_should_match {v}"))),
    };
    Ok(Clause::Bool {
        must,
        should,
        must_not,
        minimum_should_match,
    })
}

fn string(query: &str, v: &Value) -> Result<String, EsError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| EsError::parsing(format!("[{query}] value must be a string, not {v}")))
}

/// A field `query` (prefix, wildcard, regexp) may read: a string type, as Elasticsearch says.
fn text_field(query: &str, name: &str, lookup: Resolve) -> Result<Option<Field>, EsError> {
    let Some(field) = resolve(name, lookup)? else {
        return Ok(None);
    };
    if !field.ty.is_text() {
        return Err(EsError::shard(format!(
            "failed to create query: Can only use {query} queries on keyword, text and wildcard fields - not on [{name}] which is of type [{}]",
            field.ty.ty
        )));
    }
    Ok(Some(field))
}

fn term(name: &str, values: &[Value], ci: bool, lookup: Resolve) -> Result<Clause, EsError> {
    let Some(field) = resolve(name, lookup)? else {
        return Ok(Clause::Nothing);
    };
    if field.ty.ty == "object" {
        return Err(EsError::shard(format!(
            "failed to create query: [{name}] is an object; a term reads a field"
        )));
    }
    let mut scalars = Vec::new();
    for v in values {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            other => {
                return Err(EsError::parsing(format!(
                    "[term] query does not support a {} value",
                    json_type(other)
                )))
            }
        };
        if field.ty.ty != "ip" && text.contains('/') && parse_net(&text).is_some() {
            return Err(EsError::shard(format!(
                "failed to create query: [{text}] is a CIDR range, which only an ip field reads; [{name}] is of type [{}]",
                field.ty.ty
            )));
        }
        let scalar = if field.ty.ty == "ip" && text.contains('/') {
            parse_net(&text).map(|(ip, len)| Scalar::Net(ip, len))
        } else {
            scalar(&field.ty, v)
        };
        scalars.push(scalar.ok_or_else(|| {
            EsError::shard(format!(
                "failed to create query: [{text}] is not a value of [{name}], of type [{}]",
                field.ty.ty
            ))
        })?);
    }
    Ok(Clause::Term {
        field,
        values: scalars,
        case_insensitive: ci,
    })
}

/// Formats the server reads a date in (all of them RFC 3339 in UTC here).
const DATE_FORMATS: [&str; 3] = [
    "strict_date_optional_time_nanos",
    "strict_date_optional_time",
    "date_optional_time",
];

fn range(body: &Value, lookup: Resolve) -> Result<Clause, EsError> {
    let (name, v) = one_field("range", body)?;
    let o = v
        .as_object()
        .ok_or_else(|| EsError::parsing(format!("[range] query malformed for [{name}]")))?;
    only_keys("range", o, &["gte", "gt", "lte", "lt", "format", "boost"])?;
    let format = match o.get("format") {
        None => None,
        Some(Value::String(f)) if DATE_FORMATS.contains(&f.as_str()) => Some(f.as_str()),
        Some(f) => {
            return Err(EsError::parsing(format!(
                "[range] format {f}: the test server reads {DATE_FORMATS:?}"
            )))
        }
    };
    let Some(field) = resolve(name, lookup)? else {
        return Ok(Clause::Nothing);
    };
    let ty = &field.ty;
    if !(ty.is_date() || ty.is_integer() || ty.is_float()) {
        return Err(EsError::shard(format!(
            "failed to create query: a range reads dates and numbers here; [{name}] is of type [{}]",
            ty.ty
        )));
    }
    if format.is_some() && !ty.is_date() {
        return Err(EsError::shard(format!(
            "failed to create query: field [{name}] of type [{}] does not support custom formats",
            ty.ty
        )));
    }
    let mut bounds = Vec::new();
    for (key, op) in [
        ("gte", Op::Gte),
        ("gt", Op::Gt),
        ("lte", Op::Lte),
        ("lt", Op::Lt),
    ] {
        let Some(v) = o.get(key) else { continue };
        let s = scalar(ty, v).ok_or_else(|| {
            EsError::shard(if ty.is_date() {
                format!(
                    "failed to create query: failed to parse date field [{v}] with format [{}]",
                    format.unwrap_or("strict_date_optional_time||epoch_millis")
                )
            } else {
                format!("failed to create query: [{v}] is not a number for [{name}]")
            })
        })?;
        bounds.push((op, s));
    }
    Ok(Clause::Range { field, bounds })
}

/// `v` as a field of type `ty` holds it; `None` when it cannot be one.
fn scalar(ty: &FieldType, v: &Value) -> Option<Scalar> {
    if ty.is_text() {
        return match v {
            Value::String(s) => Some(Scalar::Str(s.clone())),
            Value::Number(_) | Value::Bool(_) => Some(Scalar::Str(v.to_string())),
            _ => None,
        };
    }
    if ty.is_integer() {
        return match v {
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or(n.as_u64().map(i128::from))
                .map(Scalar::Int),
            Value::String(s) => s.parse().ok().map(Scalar::Int),
            _ => None,
        };
    }
    if ty.is_float() {
        return match v {
            Value::Number(n) => n.as_f64().map(Scalar::Float),
            Value::String(s) => s.parse().ok().map(Scalar::Float),
            _ => None,
        };
    }
    if ty.is_date() {
        let ns = vigil_events::time::parse_rfc3339_ns(v.as_str()?)?;
        // A `date` keeps milliseconds: Elasticsearch truncates what a value says beyond them.
        return Some(Scalar::Time(if ty.ty == "date" {
            ns / 1_000_000
        } else {
            ns
        }));
    }
    match ty.ty.as_str() {
        "ip" => v
            .as_str()?
            .parse::<IpAddr>()
            .ok()
            .map(|ip| Scalar::Ip(ip16(ip))),
        "boolean" => match v {
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::String(s) => s.parse().ok().map(Scalar::Bool),
            _ => None,
        },
        _ => None,
    }
}

fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// `10.0.0.0/8` as 16 bytes and a prefix over them.
fn parse_net(text: &str) -> Option<([u8; 16], u8)> {
    let (addr, len) = text.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let (max, offset) = if ip.is_ipv4() { (32, 96) } else { (128, 0) };
    (len <= max).then_some((ip16(ip), len + offset))
}

fn in_net(ip: &[u8; 16], net: &[u8; 16], len: u8) -> bool {
    (0..usize::from(len)).all(|bit| {
        let mask = 0x80u8 >> (bit % 8);
        ip[bit / 8] & mask == net[bit / 8] & mask
    })
}

/// The values of the dotted `path` in `doc`, through nested objects and arrays.
pub fn values<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut at = vec![doc];
    for part in path.split('.') {
        let mut next = Vec::new();
        for v in at {
            match v {
                Value::Array(items) => next.extend(items.iter().filter_map(|i| i.get(part))),
                _ => next.extend(v.get(part)),
            }
        }
        at = next;
    }
    let mut out = Vec::new();
    fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            Value::Null => {}
            v => out.push(v),
        }
    }
    at.into_iter().for_each(|v| flatten(v, &mut out));
    out
}

/// What the index holds of `field` in `doc`: its values as the field's type reads them,
/// keywords beyond `ignore_above` left out.
fn indexed(doc: &Value, field: &Field) -> Vec<Scalar> {
    values(doc, &field.name)
        .into_iter()
        .filter(|v| {
            !matches!((v, field.ty.ignore_above), (Value::String(s), Some(max)) if s.chars().count() > max)
        })
        .filter_map(|v| scalar(&field.ty, v))
        .collect()
}

fn has_leaf(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(o) => o.values().any(has_leaf),
        Value::Array(items) => items.iter().any(has_leaf),
        _ => true,
    }
}

fn ascii_lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Whether `doc` matches `clause`.
pub fn matches(clause: &Clause, doc: &Value) -> bool {
    match clause {
        Clause::MatchAll => true,
        Clause::Nothing => false,
        Clause::Bool {
            must,
            should,
            must_not,
            minimum_should_match,
        } => {
            must.iter().all(|c| matches(c, doc))
                && !must_not.iter().any(|c| matches(c, doc))
                && should.iter().filter(|c| matches(c, doc)).count() >= *minimum_should_match
        }
        Clause::Term {
            field,
            values,
            case_insensitive,
        } => indexed(doc, field).iter().any(|have| {
            values.iter().any(|want| match (have, want) {
                (Scalar::Ip(ip), Scalar::Net(net, len)) => in_net(ip, net, *len),
                (Scalar::Str(a), Scalar::Str(b)) if *case_insensitive => a.eq_ignore_ascii_case(b),
                (a, b) => a == b,
            })
        }),
        Clause::Range { field, bounds } => indexed(doc, field).iter().any(|have| {
            bounds.iter().all(|(op, b)| match have.partial_cmp(b) {
                Some(o) => match op {
                    Op::Gte => o.is_ge(),
                    Op::Gt => o.is_gt(),
                    Op::Lte => o.is_le(),
                    Op::Lt => o.is_lt(),
                },
                None => false,
            })
        }),
        Clause::Prefix {
            field,
            prefix,
            case_insensitive,
        } => strings(doc, field).any(|s| {
            if *case_insensitive {
                ascii_lower(&s).starts_with(&ascii_lower(prefix))
            } else {
                s.starts_with(prefix.as_str())
            }
        }),
        Clause::Wildcard {
            field,
            pattern,
            case_insensitive,
        } => strings(doc, field).any(|s| {
            let chars: Vec<char> = s.chars().collect();
            wild_match(pattern, &chars, *case_insensitive)
        }),
        Clause::Regexp { field, program } => strings(doc, field).any(|s| program.is_match(&s)),
        Clause::Exists { field } => {
            if field.ty.ty == "object" {
                values(doc, &field.name).into_iter().any(has_leaf)
            } else {
                !indexed(doc, field).is_empty()
            }
        }
    }
}

fn strings(doc: &Value, field: &Field) -> impl Iterator<Item = String> {
    indexed(doc, field).into_iter().filter_map(|s| match s {
        Scalar::Str(s) => Some(s),
        _ => None,
    })
}

/// The sort key of `doc` on `field`: its first value, as its type orders.
pub fn sort_key(doc: &Value, field: &Field) -> Option<Scalar> {
    indexed(doc, field).into_iter().next()
}

/// The `sort` of a search: fields with their order (descending when true).
pub fn compile_sort(sort: &Value, lookup: Resolve) -> Result<Vec<(Field, bool)>, EsError> {
    let items = match sort {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let mut out = Vec::new();
    for item in &items {
        let (name, order) = match item {
            Value::String(name) => (name.as_str(), "asc"),
            Value::Object(o) if o.len() == 1 => {
                let (name, spec) = o.iter().next().expect("one key");
                let order = match spec {
                    Value::String(s) => s.as_str(),
                    Value::Object(s) => {
                        only_keys("sort", s, &["order", "format"])?;
                        s.get("order").and_then(Value::as_str).unwrap_or("asc")
                    }
                    v => {
                        return Err(EsError::parsing(format!(
                            "[sort] malformed for [{name}]: {v}"
                        )))
                    }
                };
                (name.as_str(), order)
            }
            v => return Err(EsError::parsing(format!("[sort] malformed: {v}"))),
        };
        let desc = match order {
            "asc" => false,
            "desc" => true,
            o => {
                return Err(EsError::parsing(format!(
                    "[sort] unknown order [{o}]: asc or desc"
                )))
            }
        };
        match lookup(name) {
            Lookup::Mapped(ty) if ty.ty != "object" => out.push((
                Field {
                    name: name.to_string(),
                    ty,
                },
                desc,
            )),
            // Nothing holds it yet: nothing to sort.
            Lookup::NotYet => {}
            _ => {
                return Err(EsError::shard(format!(
                    "No mapping found for [{name}] in order to sort on"
                )))
            }
        }
    }
    Ok(out)
}

/// A `wildcard` pattern's parts.
#[derive(Debug, Clone, PartialEq)]
pub enum Wild {
    Any,
    One,
    Char(char),
}

fn wildcard(pattern: &str) -> Vec<Wild> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Wild::Any,
            '?' => Wild::One,
            // A backslash makes the next character literal (a trailing one is itself).
            '\\' => Wild::Char(chars.next().unwrap_or('\\')),
            c => Wild::Char(c),
        });
    }
    out
}

fn wild_match(p: &[Wild], s: &[char], ci: bool) -> bool {
    // Which prefixes of `s` the pattern so far matches.
    let mut at = vec![false; s.len() + 1];
    at[0] = true;
    for w in p {
        let mut next = vec![false; s.len() + 1];
        for i in 0..=s.len() {
            if !at[i] {
                continue;
            }
            match w {
                Wild::Any => {
                    for n in next.iter_mut().skip(i) {
                        *n = true;
                    }
                }
                Wild::One if i < s.len() => next[i + 1] = true,
                Wild::Char(c)
                    if i < s.len() && (s[i] == *c || (ci && s[i].eq_ignore_ascii_case(c))) =>
                {
                    next[i + 1] = true
                }
                _ => {}
            }
        }
        at = next;
    }
    at[s.len()]
}
