//! Sigma detection on vigil's events, built on the `sigma-rust` crate.
//!
//! Rules are loaded from files and directories; a rule that does not parse, or whose logsource
//! vigil does not produce, is reported with its file and the reason while the others load.
//! Each event is mapped to Sigma's Linux taxonomy ([`fields`]) and checked only against the rules
//! of its category, and among those only against the rules whose needed literals
//! ([`literals`]) occur in it, found for all rules at once with one Aho-Corasick automaton.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use aho_corasick::AhoCorasick;
use vigil_events::Event;

pub mod fields;
pub mod literals;

pub use fields::{sigma_fields, SigmaFields, Users, CATEGORIES};

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
    /// Its logsource category.
    pub category: &'static str,
    /// Literals of which a match needs one (`None`: evaluated on every event of its category).
    pub needs: literals::Needed,
}

/// Why a rule file was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct SigmaLoadError {
    /// The file.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// The rules of one category and their prefilter.
#[derive(Default)]
struct CategoryIndex {
    /// Rules evaluated on every event of the category.
    always: Vec<usize>,
    /// Finds every rule literal in an event's haystack.
    automaton: Option<AhoCorasick>,
    /// For each automaton pattern, the rules it admits: the rule, and the field and place the
    /// text must be found in for that rule.
    pattern_rules: Vec<Vec<(usize, Option<String>, literals::Anchor)>>,
}

/// A set of rules, ready to evaluate events.
#[derive(Default)]
pub struct SigmaEngine {
    rules: Vec<SigmaRule>,
    index: HashMap<&'static str, CategoryIndex>,
    users: Users,
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

/// Parses one rule file.
pub fn load_rule(file: &Path, text: &str) -> Result<SigmaRule, SigmaLoadError> {
    let err = |reason: String| SigmaLoadError {
        file: file.display().to_string(),
        reason,
    };
    let rule =
        sigma_rust::rule_from_yaml(text).map_err(|e| err(format!("not a Sigma rule: {e}")))?;
    let product = rule.logsource.product.as_deref().unwrap_or("linux");
    if product != "linux" {
        return Err(err(format!(
            "logsource product `{product}`: vigil produces Linux events only"
        )));
    }
    let category = rule.logsource.category.as_deref().unwrap_or("");
    let Some(category) = CATEGORIES.iter().copied().find(|c| *c == category) else {
        return Err(err(format!(
            "logsource category `{category}` is not one vigil produces (use one of: {})",
            CATEGORIES.join(", ")
        )));
    };
    // The literal analysis reads the detection as plain YAML.
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| err(format!("not YAML: {e}")))?;
    let needs = doc
        .get("detection")
        .and_then(|d| d.as_mapping())
        .and_then(|d| {
            let selections: Vec<(String, literals::Needed)> = d
                .iter()
                .filter_map(|(k, v)| {
                    let k = k.as_str()?;
                    (k != "condition" && k != "timeframe")
                        .then(|| (k.to_string(), literals::selection_needs(v)))
                })
                .collect();
            let condition = d.get("condition")?;
            match condition {
                serde_yaml::Value::String(c) => literals::condition_needs(c, &selections),
                // A list of conditions is any of them.
                serde_yaml::Value::Sequence(cs) => {
                    let mut all = Vec::new();
                    for c in cs {
                        all.extend(literals::condition_needs(c.as_str()?, &selections)?);
                    }
                    Some(all)
                }
                _ => None,
            }
        });
    Ok(SigmaRule {
        id: rule.id.clone().unwrap_or_else(|| rule.title.clone()),
        level: level_name(&rule),
        file: file.to_path_buf(),
        category,
        needs,
        rule,
    })
}

/// Rule files under `path` (itself if a file), in a stable order.
fn rule_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rule_files(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            out.push(p);
        }
    }
    Ok(())
}

impl SigmaEngine {
    /// Loads every rule under `paths`; returns the engine and the files that did not load.
    pub fn load(paths: &[PathBuf]) -> (SigmaEngine, Vec<SigmaLoadError>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let mut files = Vec::new();
            if let Err(e) = rule_files(path, &mut files) {
                errors.push(SigmaLoadError {
                    file: path.display().to_string(),
                    reason: format!("cannot read: {e}"),
                });
            }
            for f in files {
                match std::fs::read_to_string(&f) {
                    Ok(text) => match load_rule(&f, &text) {
                        Ok(r) => rules.push(r),
                        Err(e) => errors.push(e),
                    },
                    Err(e) => errors.push(SigmaLoadError {
                        file: f.display().to_string(),
                        reason: format!("cannot read: {e}"),
                    }),
                }
            }
        }
        (SigmaEngine::from_rules(rules), errors)
    }

    /// An engine over `rules`.
    pub fn from_rules(rules: Vec<SigmaRule>) -> SigmaEngine {
        let mut index: HashMap<&'static str, CategoryIndex> = HashMap::new();
        // One pattern per distinct literal text of a category, admitting every rule that needs
        // it (in the field and place that rule says).
        let mut patterns: HashMap<&'static str, Vec<String>> = HashMap::new();
        let mut pattern_ids: HashMap<(&'static str, String), usize> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            let idx = index.entry(r.category).or_default();
            match &r.needs {
                None => idx.always.push(i),
                Some(lits) => {
                    let pats = patterns.entry(r.category).or_default();
                    for l in lits {
                        let id = *pattern_ids
                            .entry((r.category, l.text.clone()))
                            .or_insert_with(|| {
                                pats.push(l.text.clone());
                                idx.pattern_rules.push(Vec::new());
                                pats.len() - 1
                            });
                        idx.pattern_rules[id].push((i, l.field.clone(), l.anchor));
                    }
                }
            }
        }
        for (cat, pats) in patterns {
            let idx = index.get_mut(cat).expect("indexed above");
            // Sigma compares without case by default; literals are lower-cased already.
            idx.automaton = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&pats)
                .ok();
            if idx.automaton.is_none() {
                // Cannot happen for plain strings; evaluate those rules always rather than never.
                let rules: Vec<usize> =
                    idx.pattern_rules.drain(..).flatten().map(|p| p.0).collect();
                idx.always.extend(rules);
            }
        }
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

    /// The rules `e` matches.
    pub fn evaluate(&self, e: &Event) -> Vec<SigmaMatch<'_>> {
        let Some(f) = sigma_fields(e, &self.users) else {
            return Vec::new();
        };
        self.evaluate_fields(&f)
    }

    /// The rules an already mapped event matches.
    pub fn evaluate_fields(&self, f: &SigmaFields) -> Vec<SigmaMatch<'_>> {
        let Some(idx) = self.index.get(f.category) else {
            return Vec::new();
        };
        let mut candidates: Vec<usize> = idx.always.clone();
        if let Some(ac) = &idx.automaton {
            for m in ac.find_overlapping_iter(&f.haystack) {
                let span = f.span_of(m.start(), m.end());
                for (rule, field, anchor) in &idx.pattern_rules[m.pattern().as_usize()] {
                    let placed = match (field, span) {
                        (None, _) => true,
                        (Some(want), Some((name, s, e))) if want == name => match anchor {
                            literals::Anchor::Anywhere => true,
                            literals::Anchor::Start => m.start() == s,
                            literals::Anchor::End => m.end() == e,
                            literals::Anchor::Whole => m.start() == s && m.end() == e,
                        },
                        _ => false,
                    };
                    if placed {
                        candidates.push(*rule);
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Vec::new();
        }
        candidates.sort_unstable();
        candidates.dedup();
        let event = f.to_event();
        candidates
            .into_iter()
            .map(|i| &self.rules[i])
            .filter(|r| r.rule.is_match(&event))
            .map(|rule| SigmaMatch { rule })
            .collect()
    }

    /// Every rule against `f`, no category or literal index: the baseline the benchmark
    /// compares with. Returns the matches of rules of the event's category (a rule of another
    /// category can match fields it shares, `Image` for one, which is why the engine indexes by
    /// category in the first place).
    pub fn evaluate_naive(&self, f: &SigmaFields) -> usize {
        let event = f.to_event();
        self.rules
            .iter()
            .filter(|r| r.rule.is_match(&event) && r.category == f.category)
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
    fn a_rule_for_another_product_is_refused_with_the_reason() {
        let text = "title: t\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s\n";
        let e = load_rule(Path::new("w.yml"), text).err().unwrap();
        assert!(e.reason.contains("Linux events only"), "{e}");
    }
}
