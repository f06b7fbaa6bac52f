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
mod tests {
    use super::*;

    #[test]
    fn every_shared_testdata_rule_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sigma-linux");
        if !dir.exists() {
            panic!(
                "{} is missing: the test data sits beside the project",
                dir.display()
            );
        }
        let (engine, errors) = SigmaEngine::load(&[dir]);
        assert!(errors.is_empty(), "{errors:#?}");
        assert!(engine.rules().len() >= 48, "{}", engine.rules().len());
    }

    #[test]
    fn the_shipped_rules_name_only_fields_vigil_fills() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/sigma");
        let (engine, errors) = SigmaEngine::load(&[dir]);
        assert!(errors.is_empty(), "{errors:#?}");
        let warnings: Vec<String> = engine.warnings().map(|w| w.to_string()).collect();
        assert!(warnings.is_empty(), "{warnings:#?}");
    }

    /// The prefilter finds a literal three ways: a field's whole value looked up, a keyword
    /// as the whole of any value, and the rest searched for. Each admits what sigma-rust
    /// matches, whatever the case and whether the value is a number.
    #[test]
    fn whole_values_keywords_and_searched_literals_admit_what_sigma_rust_matches() {
        use testing::{engine, exec_of, fired_as_sigma_rust, rule, selection};
        let auditd = "  service: auditd\n";
        let keywords = |k: &str| {
            rule(
                auditd,
                &format!("  keywords:\n    - '{k}'\n  condition: keywords\n"),
            )
        };
        let rules = [
            (
                "type-and-uid.yml",
                rule(
                    auditd,
                    "  s:\n    type: syscall\n    euid: 33\n  condition: s\n",
                ),
            ),
            ("number-keyword.yml", keywords("33")),
            ("name-keyword.yml", keywords("CHATTR")),
            ("part-keyword.yml", keywords("hatt")),
            ("wild-keyword.yml", keywords("*hatt*")),
            ("number-start.yml", selection(auditd, "pid|startswith: '4'")),
            ("exe-end.yml", selection(auditd, "exe|endswith: '/CHATTR'")),
        ];
        let engine = engine(&rules);
        let e = exec_of(
            vigil_events::Process {
                binary: "/usr/bin/chattr".into(),
                arguments: "-i x".into(),
                pid: 42,
                uid: 33,
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            fired_as_sigma_rust(&engine, &e),
            [
                "exe-end.yml",
                "name-keyword.yml",
                "number-keyword.yml",
                "number-start.yml",
                "type-and-uid.yml",
                "wild-keyword.yml"
            ]
        );
    }

    const CREATION: &str = "  category: process_creation\n";

    /// A literal repeated through a field is taken once, and again where it ends the field:
    /// each anchor still admits what sigma-rust matches.
    #[test]
    fn a_literal_repeated_through_a_field_admits_every_anchor() {
        use testing::{engine, exec, fired_as_sigma_rust, selection};
        let rules = [
            (
                "contains.yml",
                selection(CREATION, "CommandLine|contains: '/tmp/'"),
            ),
            (
                "endswith.yml",
                selection(CREATION, "CommandLine|endswith: '/tmp/'"),
            ),
            (
                "startswith.yml",
                selection(CREATION, "CommandLine|startswith: '/bin/x /tmp/'"),
            ),
            (
                "not-at-end.yml",
                selection(CREATION, "CommandLine|endswith: '/tmp/y'"),
            ),
        ];
        let e = exec("/bin/x", &"/tmp/".repeat(5000));
        assert_eq!(
            fired_as_sigma_rust(&engine(&rules), &e),
            ["contains.yml", "endswith.yml", "startswith.yml"]
        );
    }

    /// sigma-rust lower-cases values by Unicode's rules: a Kelvin sign is a `k` to it, and `İ`
    /// an `i` and a combining dot. The prefilter admits such values as sigma-rust reads them.
    #[test]
    fn letters_unicode_lower_cases_into_ascii_are_admitted_as_sigma_rust_reads_them() {
        use testing::{engine, exec, fired_as_sigma_rust, selection};
        let rules = [
            ("kelvin.yml", selection(CREATION, "Image|endswith: '/kill'")),
            (
                "dotted.yml",
                selection(CREATION, "CommandLine|contains: ' xi'"),
            ),
            ("whole.yml", selection(CREATION, "Image: '/usr/bin/kill'")),
        ];
        let e = exec("/usr/bin/\u{212A}ill", "x\u{130}");
        assert_eq!(
            fired_as_sigma_rust(&engine(&rules), &e),
            ["dotted.yml", "kelvin.yml", "whole.yml"]
        );
    }

    const RULE: &str = "title: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /bin/x\n  condition: s\n";

    /// `f` on another thread, which must finish within `secs`.
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .expect("did not finish in time")
    }

    #[test]
    fn symlink_loops_in_a_rule_directory_are_not_followed_and_are_reported() {
        use std::os::unix::fs::symlink;
        let dir = std::env::temp_dir().join(format!("vigil-sigma-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules/sub")).unwrap();
        std::fs::write(dir.join("rules/sub/a.yml"), RULE).unwrap();
        std::fs::write(dir.join("b.yml"), RULE.replace("/bin/x", "/bin/y")).unwrap();
        // Two links back up: every level doubles the paths a following walk takes.
        symlink(dir.join("rules"), dir.join("rules/sub/up")).unwrap();
        symlink("..", dir.join("rules/sub/parent")).unwrap();
        // A link to a rule file is followed (Kubernetes mounts ConfigMaps so).
        symlink(dir.join("b.yml"), dir.join("rules/b.yml")).unwrap();
        let root = dir.join("rules");
        let (engine, errors) = within(5, move || {
            let (e, errors) = SigmaEngine::load(&[root]);
            (e.rules().len(), errors)
        });
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(engine, 2, "{errors:#?}");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        for e in &errors {
            assert!(
                e.reason.contains("symbolic link to a directory"),
                "{errors:#?}"
            );
        }
    }

    #[test]
    fn a_rule_directory_walk_stops_at_its_depth_limit() {
        let dir = std::env::temp_dir().join(format!("vigil-sigma-deep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let deep = (0..MAX_WALK_DEPTH + 4).fold(dir.clone(), |p, i| p.join(format!("d{i}")));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("a.yml"), RULE).unwrap();
        std::fs::write(dir.join("a.yml"), RULE).unwrap();
        let (files, skipped) = rule_files(std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(files, vec![dir.join("a.yml")]);
        assert_eq!(skipped.len(), 1, "{skipped:#?}");
        assert!(skipped[0].reason.contains("deeper than"), "{skipped:#?}");
    }

    #[test]
    fn a_rule_file_others_can_write_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vigil-sigma-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.yml");
        std::fs::write(&f, RULE).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (engine, errors) = SigmaEngine::load(std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(engine.rules().is_empty());
        assert_eq!(errors[0].file, f.display().to_string());
        assert!(errors[0].reason.contains("chmod go-w"), "{errors:#?}");
        assert!(
            !errors[0].reason.starts_with(&errors[0].file),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_rule_with_expanding_aliases_or_deep_nesting_is_refused_by_the_gate() {
        let aliases = RULE.replace("Image: /bin/x", "Image: &i /bin/x\n    CommandLine: *i");
        let e = load_rule(Path::new("a.yml"), &aliases).err().unwrap();
        assert!(e.reason.contains("YAML alias `*i`"), "{e}");
        let deep = RULE.replace(
            "/bin/x",
            &format!("{}x{}", "[".repeat(100_000), "]".repeat(100_000)),
        );
        let e = within(2, move || {
            load_rule(Path::new("d.yml"), &deep).err().unwrap()
        });
        assert!(e.reason.contains("nest more than 64 levels"), "{e}");
    }

    #[test]
    fn a_condition_of_100000_operators_or_parentheses_is_refused_not_overflowing_the_stack() {
        for condition in [
            format!("{}s{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("s{}", " and s".repeat(100_000)),
            format!("{}s", "not ".repeat(100_000)),
        ] {
            let text = RULE.replace("condition: s", &format!("condition: {condition}"));
            let e = within(2, move || {
                load_rule(Path::new("c.yml"), &text).err().unwrap()
            });
            assert!(e.reason.contains("operators and parentheses"), "{e}");
        }
        // At the limit, on a thread's default stack, the rule loads and evaluates.
        let condition = format!(
            "(s{}) and not s",
            " or s".repeat(MAX_CONDITION_OPERATORS - 3)
        );
        let text = RULE.replace("condition: s", &format!("condition: {condition}"));
        let rule = within(2, move || {
            let r = load_rule(Path::new("c.yml"), &text).unwrap();
            let event = sigma_rust::event_from_json(r#"{"Image": "/bin/x"}"#).unwrap();
            r.rule.is_match(&event)
        });
        assert!(!rule);
    }

    #[test]
    fn a_condition_outside_ascii_is_refused_not_a_panic_in_sigma_rust() {
        let text = RULE.replace("condition: s", "condition: s\u{e9} and s");
        let text = text.replace("  s:\n", "  s\u{e9}:\n    Image: /bin/y\n  s:\n");
        let e = within(2, move || {
            load_rule(Path::new("u.yml"), &text).err().unwrap()
        });
        assert!(e.reason.contains("outside ASCII"), "{e}");
        assert!(e.reason.contains("(character 2)"), "{e}");
    }

    /// sigma-rust reads every key of a detection but `condition` as a search identifier,
    /// `timeframe` too: the prefilter admits what `1 of them` may match through it.
    #[test]
    fn a_timeframe_written_as_a_selection_is_one_to_the_prefilter_too() {
        use testing::{engine, exec, fired_as_sigma_rust, rule};
        let rules = [(
            "timeframe.yml",
            rule(
                "  service: auditd\n",
                "  s:\n    type: EXECVE\n    a0: nothing-like-this\n  timeframe: ['evilarg']\n  condition: 1 of them\n",
            ),
        )];
        let e = exec("/usr/bin/x", "evilarg");
        assert_eq!(fired_as_sigma_rust(&engine(&rules), &e), ["timeframe.yml"]);
    }

    /// A tag is refused by the gate: serde_yaml keeps a tagged condition apart, which would
    /// have let it past the checks on its size to sigma-rust, whose parser reads it plainly.
    #[test]
    fn a_tagged_value_is_refused_by_the_gate() {
        for tagged in [
            RULE.replace("condition: s", "condition: !x s"),
            RULE.replace("condition: s", "!x condition: s"),
            RULE.replace("detection:", "!x detection:"),
            RULE.replace("Image: /bin/x", "Image: !!str /bin/x"),
        ] {
            let e = load_rule(Path::new("t.yml"), &tagged).err().unwrap();
            assert!(e.reason.contains("YAML tag `!"), "{tagged}: {e}");
        }
    }

    /// A detection key that is not text (`1:`) is a search identifier to sigma-rust: refused,
    /// not left out of what `1 of them` may match.
    #[test]
    fn a_detection_key_that_is_not_text_is_refused_with_the_quoting() {
        for key in ["1", "true", "~"] {
            let text = RULE.replace("  s:\n", &format!("  {key}:\n    Image: /evil\n  s:\n"));
            let e = load_rule(Path::new("k.yml"), &text).err().unwrap();
            assert!(e.reason.contains("is not text: quote it"), "{key}: {e}");
        }
        let quoted = RULE.replace("  s:\n", "  '1':\n    Image: /evil\n  s:\n");
        assert!(load_rule(Path::new("q.yml"), &quoted).is_ok());
    }

    #[test]
    fn a_rule_for_another_product_is_refused_with_the_reason() {
        let text = "title: t\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s\n";
        let e = load_rule(Path::new("w.yml"), text).err().unwrap();
        assert!(e.reason.contains("Linux events only"), "{e}");
    }
}
