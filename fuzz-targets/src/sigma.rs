//! `sigma`: a Sigma rule file's text through the YAML gate and the loader, then, when it
//! loads, the engine built from it evaluates the sample events (the literal prefilter and
//! sigma-rust's matcher).

use std::path::Path;

use vigil_policy_engine::{
    check_yaml,
    sigma::{load_rule, SigmaEngine},
    Limits,
};

/// See the module's documentation.
pub fn sigma(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = "fuzz.yml";
    if check_yaml(file, text, &Limits::SIGMA).is_err() {
        return;
    }
    let rule = match load_rule(Path::new(file), text) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let engine = SigmaEngine::from_rules(vec![rule]);
    for e in crate::samples::events() {
        let _ = engine.evaluate(e).len();
    }
}
