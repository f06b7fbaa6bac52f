//! Sigma detection on vigil's events, built on the `sigma-rust` crate.
//!
//! Rules are loaded from files and directories; a rule that does not parse, or whose logsource
//! vigil does not produce, is reported with its file and the reason while the others load.
//! Each event is mapped to Sigma's Linux taxonomy ([`fields`]) and to the auditd records and
//! typed command line log rules are written for ([`auditd`]), and each view is checked only
//! against the rules of its logsource, and among those only against the rules whose needed
//! literals ([`literals`]) occur in it, found for all rules at once (`prefilter`).

use std::path::{Path, PathBuf};

use vigil_events::Event;

pub mod auditd;
mod exact;
pub mod fields;
pub mod literals;
mod pattern;
mod prefilter;
#[cfg(test)]
mod testing;
mod unfilled;
mod walk;

pub use fields::{sigma_fields, SigmaFields, Users, CATEGORIES, CATEGORY_FIELDS};
pub use unfilled::SigmaWarning;
pub use walk::{rule_files, MAX_WALK_DEPTH, MAX_WALK_ENTRIES};

use crate::{
    error::PolicyErrors,
    input::{check_yaml, read_yaml, InputError, Limits},
};

/// One loaded rule.
pub struct SigmaRule {
    /// The parsed rule.
    pub rule: sigma_rust::Rule,
    /// Its `id`, or its title when it has none.
    pub id: String,
    /// Its level (`medium` when it has none, as Sigma's default).
    pub level: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Its logsource: a category, or the log it is evaluated on ([`auditd::AUDITD`],
    /// [`auditd::LINUX`]).
    pub category: &'static str,
    /// Literals of which a match needs one (`None`: evaluated on every event of its category).
    pub needs: literals::Needed,
    /// For an auditd rule, the record types (`type`, lower-cased) it can match only one of,
    /// when its condition needs one.
    pub record_types: Option<Vec<String>>,
    /// The fields it names that vigil never fills in its category's events.
    pub warnings: Vec<SigmaWarning>,
    /// The rule as the engine decides it without sigma-rust, where its shape allows
    /// ([`exact`]).
    exact: Option<exact::ExactRule>,
}

/// Why a rule file was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {reason}", .at.map_or(String::new(), |(l, c)| format!(":{l}:{c}")))]
pub struct SigmaLoadError {
    /// The file.
    pub file: String,
    /// The line and column the reason is about, when it is about one.
    pub at: Option<(usize, usize)>,
    /// Why.
    pub reason: String,
}

/// A set of rules, ready to evaluate events.
#[derive(Default)]
pub struct SigmaEngine {
    rules: Vec<SigmaRule>,
    index: prefilter::Indexes,
    users: Users,
}

/// The logsource a rule is evaluated on, or why vigil has none for it.
fn logsource_of(
    product: Option<&str>,
    category: Option<&str>,
    service: Option<&str>,
) -> Result<&'static str, String> {
    let product = product.unwrap_or("linux");
    if product != "linux" {
        return Err(format!(
            "logsource product `{product}`: vigil produces Linux events only"
        ));
    }
    match (category, service) {
        (Some(category), _) => CATEGORIES
            .iter()
            .copied()
            .find(|c| *c == category)
            .ok_or_else(|| {
                format!(
                    "logsource category `{category}` is not one vigil produces (use one of: {})",
                    CATEGORIES.join(", ")
                )
            }),
        (None, Some(service)) => auditd::SERVICES
            .iter()
            .copied()
            .find(|s| *s == service)
            .ok_or_else(|| {
                format!(
                    "logsource service `{service}`: vigil does not read that service's log \
                     (it writes records for service: {}, and for rules with a product only \
                     the command line as typed)",
                    auditd::SERVICES.join(", ")
                )
            }),
        (None, None) => Ok(auditd::LINUX),
    }
}

/// A rule matched an event.
#[derive(Clone, Copy)]
pub struct SigmaMatch<'a> {
    /// The rule.
    pub rule: &'a SigmaRule,
}

/// The rule's level as Sigma writes it (`medium` when it has none, Sigma's default).
fn level_name(rule: &sigma_rust::Rule) -> String {
    // sigma-rust does not export its Level type; its Debug names are the levels.
    rule.level
        .as_ref()
        .map(|l| format!("{l:?}").to_lowercase())
        .unwrap_or_else(|| "medium".into())
}

/// The gate's refusal as a rule's: the file is printed in front already. The gate stops at
/// its first problem, so a refusal has one position.
fn input_error(file: &Path, e: InputError) -> SigmaLoadError {
    let name = file.display().to_string();
    let (at, reason) = match &e {
        InputError::Invalid(errors) => (
            errors.0.first().map(|e| (e.line, e.column)),
            errors
                .0
                .iter()
                .map(|e| format!("{} (fix: {})", e.reason, e.fix))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        InputError::File(_) => (None, e.detail(&name)),
    };
    SigmaLoadError {
        file: name,
        at,
        reason,
    }
}

/// Most `and`, `or`, `not` and parentheses in one condition: sigma-rust parses and evaluates
/// conditions recursively, one call per operator, so 100,000 of them overflow the stack.
pub const MAX_CONDITION_OPERATORS: usize = 256;

/// The operators and parentheses of a condition, as sigma-rust's parser recurses on them.
fn condition_operators(condition: &str) -> usize {
    let parens = condition.matches('(').count();
    let words = condition
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| {
            ["and", "or", "not"]
                .iter()
                .any(|op| w.eq_ignore_ascii_case(op))
        })
        .count();
    parens + words
}

/// Parses one rule file's text (checked by the gate first, as for files [`SigmaEngine::load`]
/// reads).
pub fn load_rule(file: &Path, text: &str) -> Result<SigmaRule, SigmaLoadError> {
    check_yaml(&file.display().to_string(), text, &Limits::SIGMA)
        .map_err(|e| input_error(file, InputError::Invalid(PolicyErrors(vec![e]))))?;
    parse_rule(file, text)
}

/// [`load_rule`] after the gate.
fn parse_rule(file: &Path, text: &str) -> Result<SigmaRule, SigmaLoadError> {
    let err = |reason: String| SigmaLoadError {
        file: file.display().to_string(),
        at: None,
        reason,
    };
    // Read as plain YAML first: the condition's size is checked before sigma-rust parses it,
    // and the literal analysis reads the detection from it.
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| err(format!("not YAML: {e}")))?;
    // sigma-rust names a detection's keys by their text (`1:` is the search identifier `1`);
    // the literal analysis reads only keys that are text, so any other is refused here rather
    // than left out of what `1 of them` may match.
    if let Some(key) = doc
        .get("detection")
        .and_then(|d| d.as_mapping())
        .and_then(|d| d.keys().find(|k| !k.is_string()))
    {
        let key = serde_yaml::to_string(key).unwrap_or_default();
        let key = key.trim_end();
        return Err(err(format!(
            "detection key `{key}` is not text: quote it (`'{key}':`)"
        )));
    }
    let conditions: Vec<&str> = match doc.get("detection").and_then(|d| d.get("condition")) {
        Some(serde_yaml::Value::String(c)) => vec![c.as_str()],
        Some(serde_yaml::Value::Sequence(cs)) => cs.iter().filter_map(|c| c.as_str()).collect(),
        _ => Vec::new(),
    };
    // sigma-rust's condition lexer indexes bytes by characters and panics past the first
    // letter outside ASCII; a selection's name never needs one.
    if let Some((c, at)) = conditions
        .iter()
        .find_map(|c| c.chars().position(|ch| !ch.is_ascii()).map(|at| (c, at)))
    {
        let ch = c.chars().nth(at).unwrap_or_default();
        return Err(err(format!(
            "detection.condition has `{}` (character {}), outside ASCII: name the selections \
             in ASCII letters, digits and `_`",
            ch.escape_debug(),
            at + 1
        )));
    }
    if let Some(n) = conditions
        .iter()
        .map(|c| condition_operators(c))
        .find(|n| *n > MAX_CONDITION_OPERATORS)
    {
        return Err(err(format!(
            "detection.condition has {n} operators and parentheses, more than the \
             {MAX_CONDITION_OPERATORS} vigil evaluates: use `1 of selection_*` or split the rule"
        )));
    }
    // A rule file is input the agent reads at run time: a panic in sigma-rust's parser on
    // one it was not written for refuses that rule instead of ending the thread loading rules.
    let rule = std::panic::catch_unwind(|| sigma_rust::rule_from_yaml(text))
        .map_err(|_| err("sigma-rust's parser failed on this rule (it panicked)".into()))?
        .map_err(|e| err(format!("not a Sigma rule: {e}")))?;
    let ls = &rule.logsource;
    let category = logsource_of(
        ls.product.as_deref(),
        ls.category.as_deref(),
        ls.service.as_deref(),
    )
    .map_err(err)?;
    let detection = doc.get("detection").and_then(|d| d.as_mapping());
    let needs = detection.and_then(|d| literals::detection_needs(d, literals::selection_needs));
    let record_types = detection
        .filter(|_| category == auditd::AUDITD)
        .and_then(|d| literals::needed_values(d, "type"));
    let warnings = unfilled::unfilled_fields(&file.display().to_string(), text, &doc, category);
    let exact = doc.get("detection").and_then(exact::compile);
    Ok(SigmaRule {
        warnings,
        exact,
        id: rule.id.clone().unwrap_or_else(|| rule.title.clone()),
        level: level_name(&rule),
        file: file.to_path_buf(),
        category,
        needs,
        record_types,
        rule,
    })
}

impl SigmaEngine {
    /// Loads every rule under `paths`; returns the engine and what did not load: rule files,
    /// and what the directory walk skipped ([`rule_files`]).
    pub fn load(paths: &[PathBuf]) -> (SigmaEngine, Vec<SigmaLoadError>) {
        let (files, mut errors) = rule_files(paths);
        let mut rules = Vec::new();
        for f in files {
            let loaded = read_yaml(&f, &Limits::SIGMA)
                .map_err(|e| input_error(&f, e))
                .and_then(|text| parse_rule(&f, &text));
            match loaded {
                Ok(r) => rules.push(r),
                Err(e) => errors.push(e),
            }
        }
        (SigmaEngine::from_rules(rules), errors)
    }

    /// An engine over `rules`.
    pub fn from_rules(rules: Vec<SigmaRule>) -> SigmaEngine {
        let index = prefilter::index(&rules);
        SigmaEngine {
            rules,
            index,
            users: Users::read(),
        }
    }

    /// The loaded rules.
    pub fn rules(&self) -> &[SigmaRule] {
        &self.rules
    }

    /// What the loaded rules name that vigil never fills, rule by rule.
    pub fn warnings(&self) -> impl Iterator<Item = &SigmaWarning> {
        self.rules.iter().flat_map(|r| &r.warnings)
    }

    /// Whether rules on auditd's records are loaded.
    pub fn reads_auditd(&self) -> bool {
        self.index.contains_key(auditd::AUDITD)
    }

    /// The views of `e` some loaded rule is evaluated on: its category's fields, and its
    /// auditd records and typed command line where rules for those are loaded.
    pub fn views<'a>(&'a self, e: &'a Event) -> Vec<SigmaFields<'a>> {
        // An exec has five, more where its process goes by more than one name.
        let mut views = Vec::with_capacity(8);
        self.write_views(e, &mut views);
        views.retain(|f| self.index.contains_key(f.category));
        views
    }

    /// Writes the views of `e` that some rule's logsource reads to `out`, and may write others:
    /// its category's view is built before its category is known.
    fn write_views<'a>(&'a self, e: &'a Event, out: &mut impl fields::ViewSink<'a>) {
        fields::category_view(e, &self.users, out);
        if self.index.contains_key(auditd::AUDITD) {
            auditd::auditd_records(e, &self.users, out);
        }
        if self.index.contains_key(auditd::LINUX) {
            auditd::typed_lines(e, out);
        }
    }

    /// The rules `e` matches, each once (a rule may match more than one of an event's auditd
    /// records).
    pub fn evaluate(&self, e: &Event) -> Vec<SigmaMatch<'_>> {
        let mut found: Vec<usize> = Vec::new();
        self.write_views(
            e,
            &mut fields::EachView::new(|f: &SigmaFields| self.matching(f, &mut found)),
        );
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .map(|i| SigmaMatch {
                rule: &self.rules[i],
            })
            .collect()
    }

    /// The rules an already mapped event matches.
    pub fn evaluate_fields(&self, f: &SigmaFields) -> Vec<SigmaMatch<'_>> {
        let mut found = Vec::new();
        self.matching(f, &mut found);
        found
            .into_iter()
            .map(|i| SigmaMatch {
                rule: &self.rules[i],
            })
            .collect()
    }

    /// Appends the indices of the rules `f` matches to `found`.
    fn matching(&self, f: &SigmaFields, found: &mut Vec<usize>) {
        let Some(idx) = self.index.get(f.category) else {
            return;
        };
        idx.with_candidates(f, |candidates| {
            // sigma-rust's event is built only for a rule the engine cannot decide itself.
            let mut event = None;
            found.extend(candidates.iter().copied().filter(|i| {
                let r = &self.rules[*i];
                match r.exact.as_ref().and_then(|x| x.decide(f)) {
                    Some(matched) => matched,
                    None => r.rule.is_match(event.get_or_insert_with(|| f.to_event())),
                }
            }));
        });
    }

    /// Every rule against every view of `e`, no category or literal index: the baseline the
    /// benchmark compares with. Returns how many rules match a view of their own logsource (a
    /// rule of another category can match fields it shares, `Image` for one, which is why the
    /// engine indexes by logsource in the first place), each rule once.
    pub fn evaluate_naive(&self, e: &Event) -> usize {
        let views: Vec<(&'static str, sigma_rust::Event)> = self
            .views(e)
            .iter()
            .map(|f| (f.category, f.to_event()))
            .collect();
        self.rules
            .iter()
            .filter(|r| {
                views
                    .iter()
                    .any(|(c, event)| r.rule.is_match(event) && r.category == *c)
            })
            .count()
    }
}

#[cfg(test)]
mod tests;
