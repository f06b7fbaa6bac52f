//! Loading a policy: parse (serde, with the failing field's path and position), then check
//! everything serde cannot (references between fields, operators per argument type, value
//! syntax, limits, features vigil does not implement), collecting every problem at once.

use std::path::Path;

use crate::{
    args::{arg_class, check_args, ArgClass},
    error::{PolicyError, PolicyErrors},
    input::{check_yaml, read_yaml, InputError, Limits},
    kernel::{kprobe_function_candidates, lsm_function_candidates, KernelSymbols},
    locate::Locations,
    spec::{PolicyKind, PolicySpec, TracingPolicy},
};

/// API groups whose TracingPolicies vigil accepts.
pub const API_VERSIONS: [&str; 2] = ["cilium.io/v1alpha1", "vigil.dev/v1alpha1"];
/// Most selectors per hook: vigil's bound on one hook's share of the kernel's selector slots
/// (`abi::HOOK_RULES`, `abi::MAX_RULES` for file opens; Tetragon allows 5 per hook).
pub const MAX_SELECTORS: usize = 32;

/// Whether enforcement actions run or are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Actions are carried out.
    Enforce,
    /// Actions are reported as what would have happened.
    Monitor,
}

/// A policy that passed every check.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `metadata.name`.
    pub name: String,
    /// Cluster-wide or namespaced.
    pub kind: PolicyKind,
    /// Namespace of a namespaced policy.
    pub namespace: Option<String>,
    /// `policy-mode` option (default: enforce).
    pub mode: Mode,
    /// The hooks.
    pub spec: PolicySpec,
    /// What loads but may not do what its author meant (a filter that can never match, a
    /// value vigil normalized, a document skipped): `policy lint` prints them, the agent logs
    /// them.
    pub warnings: Vec<PolicyError>,
    /// The `spec.kprobes` entries left out: their function is not in this kernel and they
    /// say `ignore: {callNotFound: true}` (a warning names each).
    pub absent_kprobes: Vec<usize>,
}

/// Collects problems with their positions.
pub(crate) struct Checker<'a> {
    file: &'a str,
    locations: Locations,
    pub(crate) errors: Vec<PolicyError>,
    /// Problems found past [`MAX_REPORTED`], counted only.
    more: usize,
    pub(crate) warnings: Vec<PolicyError>,
}

/// Most problems reported for one file: a policy of 60,000 bad hooks would otherwise hold (and
/// print) 60,000 errors, and the first hundred say what is wrong as well.
pub const MAX_REPORTED: usize = 100;

impl<'a> Checker<'a> {
    fn located(&self, path: &str, at_key: bool, reason: String, fix: String) -> PolicyError {
        let pos = if at_key {
            self.locations.key(path)
        } else {
            self.locations.value(path)
        };
        let (line, column) = pos.map(|p| (p.line, p.column)).unwrap_or((1, 1));
        PolicyError {
            file: self.file.to_string(),
            line,
            column,
            path: path.to_string(),
            reason,
            fix,
        }
    }

    fn push(&mut self, path: &str, at_key: bool, reason: String, fix: String) {
        if self.errors.len() == MAX_REPORTED {
            self.more += 1;
            return;
        }
        let e = self.located(path, at_key, reason, fix);
        self.errors.push(e);
    }

    /// A value at `path` that loads but may not mean what its author wanted.
    pub(crate) fn warn(&mut self, path: &str, reason: impl Into<String>, fix: impl Into<String>) {
        if self.warnings.len() < MAX_REPORTED {
            let w = self.located(path, false, reason.into(), fix.into());
            self.warnings.push(w);
        }
    }

    /// A wrong value at `path`.
    pub(crate) fn value(&mut self, path: &str, reason: impl Into<String>, fix: impl Into<String>) {
        self.push(path, false, reason.into(), fix.into());
    }

    /// A field at `path` that should not be there.
    pub(crate) fn field(&mut self, path: &str, reason: impl Into<String>, fix: impl Into<String>) {
        self.push(path, true, reason.into(), fix.into());
    }

    /// A field vigil parses but does not implement.
    pub(crate) fn unsupported(&mut self, path: &str, feature: &str) {
        self.field(
            path,
            format!("{feature} is not supported by vigil"),
            format!(
                "remove `{}` from the policy",
                path.rsplit('.').next().unwrap_or(path)
            ),
        );
    }
}

/// Reads the policy file `path` (a file others can write is refused, and so is one past
/// [`Limits::POLICY`]), parses and checks it; what the agent, `policy lint`, `explain` and
/// `test` all load policies with.
pub fn load_policy_file(
    path: &Path,
    kernel: Option<&dyn KernelSymbols>,
) -> Result<Policy, InputError> {
    let text = read_yaml(path, &Limits::POLICY)?;
    load_local_policy(&path.display().to_string(), &text, kernel).map_err(InputError::Invalid)
}

/// Parses and checks one policy document. `file` names it in errors.
pub fn load_policy(file: &str, text: &str) -> Result<Policy, PolicyErrors> {
    load_policy_for(file, text, None)
}

/// [`load_policy`], and checks that the functions and tracepoints the policy names exist in
/// `kernel`.
pub fn load_policy_for(
    file: &str,
    text: &str,
    kernel: Option<&dyn KernelSymbols>,
) -> Result<Policy, PolicyErrors> {
    load_policy_with(file, text, kernel, false)
}

/// [`load_policy_for`] for a policy file on this machine (root's, read through the gate):
/// `${NAME}` placeholders are filled from the agent's environment, as envsubst would. A policy
/// from anywhere else (a Kubernetes object, the API) never is: its author could otherwise read
/// the agent's environment (its exporters' tokens) back from the refusal.
pub fn load_local_policy(
    file: &str,
    text: &str,
    kernel: Option<&dyn KernelSymbols>,
) -> Result<Policy, PolicyErrors> {
    load_policy_with(file, text, kernel, true)
}

pub(crate) fn load_policy_with(
    file: &str,
    text: &str,
    kernel: Option<&dyn KernelSymbols>,
    fill: bool,
) -> Result<Policy, PolicyErrors> {
    // Nothing that builds from the text sees it before the gate did.
    check_yaml(file, text, &Limits::POLICY).map_err(|e| PolicyErrors(vec![e]))?;
    let one = |e| PolicyErrors(vec![e]);
    let doc = crate::documents::policy_document(file, text).map_err(one)?;
    let mut notes = doc.notes;
    let none = |_: &str| None;
    let lookup: &dyn Fn(&str) -> Option<String> = if fill {
        &crate::documents::from_environment
    } else {
        &none
    };
    let filled =
        crate::documents::fill_placeholders(file, &doc.text, lookup, &mut notes).map_err(one)?;
    let text = filled.as_str();
    let mut c = Checker {
        file,
        locations: Locations::index(text),
        errors: Vec::new(),
        more: 0,
        warnings: notes,
    };
    let de = serde_yaml::Deserializer::from_str(text);
    let tp: TracingPolicy = match serde_path_to_error::deserialize(de) {
        Ok(tp) => tp,
        Err(e) => {
            // A syntax error leaves `?` for the key the parser never read.
            let path = e.path().to_string().replace(".?", "").replace('?', "");
            let inner = e.into_inner();
            let (reason, fix) = explain_serde(&inner.to_string());
            let at = inner.location().map(|l| (l.line(), l.column()));
            let mut err = PolicyError {
                file: file.to_string(),
                line: 1,
                column: 1,
                path: path.clone(),
                reason,
                fix,
            };
            match (at, c.locations.key(&path)) {
                (Some((line, column)), _) => (err.line, err.column) = (line, column),
                (None, Some(p)) => (err.line, err.column) = (p.line, p.column),
                (None, None) => {}
            }
            if err.path == "." || err.path.is_empty() {
                err.path = "(document)".into();
            }
            return Err(PolicyErrors(vec![err]));
        }
    };
    let mode = check_document(&mut c, &tp);
    let mut absent_kprobes = Vec::new();
    if let Some(k) = kernel {
        absent_kprobes = check_kernel(&mut c, &tp.spec, k);
        crate::uprobes::check_binaries(&mut c, &tp.spec);
    }
    if c.more > 0 {
        c.errors.push(PolicyError {
            file: file.to_string(),
            line: 1,
            column: 1,
            path: "(document)".into(),
            reason: format!("{} more problems, not shown", c.more),
            fix: "correct the problems above and check the file again".into(),
        });
    }
    if !c.errors.is_empty() {
        return Err(PolicyErrors(c.errors));
    }
    let namespace = match (tp.kind, tp.metadata.namespace) {
        // kubectl applies a namespaced object without a namespace to `default`.
        (PolicyKind::TracingPolicyNamespaced, None) => Some("default".to_string()),
        (_, ns) => ns,
    };
    Ok(Policy {
        name: tp.metadata.name,
        kind: tp.kind,
        namespace,
        mode,
        spec: tp.spec,
        warnings: c.warnings,
        absent_kprobes,
    })
}

/// Turns serde's message into a reason without its position, and a fix.
fn explain_serde(msg: &str) -> (String, String) {
    let reason = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    // serde_yaml prefixes the path it was at; ours is reported separately.
    let reason = match reason.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') => rest,
        _ => reason,
    }
    .to_string();
    let quoted = |s: &str| s.split('`').nth(1).unwrap_or("").to_string();
    let fix = if reason.starts_with("unknown field") {
        let expected = reason
            .split_once(", expected ")
            .map(|x| x.1)
            .unwrap_or("the documented fields");
        format!(
            "remove `{}` or correct its spelling; this level accepts {expected}",
            quoted(&reason)
        )
    } else if reason.starts_with("missing field") {
        format!("add `{}:` here", quoted(&reason))
    } else if reason.starts_with("unknown variant") {
        let expected = reason
            .split_once(", expected ")
            .map(|x| x.1)
            .unwrap_or("a documented value");
        format!("use {expected}")
    } else if reason.starts_with("invalid type") {
        let expected = match reason.split_once(", expected ").map(|x| x.1) {
            Some("u32" | "u64") => "a whole number of at least 0",
            Some("i64") => "a whole number",
            Some("a boolean") => "true or false",
            Some(other) => other,
            None => "the documented type",
        };
        format!("write {expected} here")
    } else if reason.starts_with("invalid value") || reason.starts_with("invalid length") {
        "write a value of the documented form here".to_string()
    } else {
        return (
            format!("YAML syntax error: {reason}"),
            "check the quoting and indentation on this line and the lines above it".to_string(),
        );
    };
    (reason, fix)
}

fn check_document(c: &mut Checker, tp: &TracingPolicy) -> Mode {
    if !API_VERSIONS.contains(&tp.api_version.as_str()) {
        c.value(
            "apiVersion",
            format!("unknown API version `{}`", tp.api_version),
            format!("use {}", API_VERSIONS.join(" or ")),
        );
    }
    let name = &tp.metadata.name;
    if !is_dns_subdomain(name) {
        c.value(
            "metadata.name",
            format!("`{name}` is not a valid policy name"),
            "use lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, at most 253 characters",
        );
    }
    if tp.kind == PolicyKind::TracingPolicyNamespaced {
        match tp.metadata.namespace.as_deref() {
            None => c.warn(
                "metadata",
                "a TracingPolicyNamespaced without a namespace acts in namespace `default`, where kubectl would apply it",
                "add `namespace:` under metadata to say which namespace's pods it covers",
            ),
            Some("") => c.field(
                "metadata.namespace",
                "the namespace is empty",
                "name the namespace whose pods the policy covers",
            ),
            Some(_) => {}
        }
    }
    let spec = &tp.spec;
    if spec.kprobes.is_empty()
        && spec.tracepoints.is_empty()
        && spec.lsmhooks.is_empty()
        && spec.uprobes.is_empty()
        && !spec.loader
    {
        c.field(
            "spec",
            "the policy has no hooks",
            "add at least one of `kprobes`, `tracepoints`, `lsmhooks` or `uprobes`, or `loader: true`",
        );
    }
    if !spec.usdts.is_empty() {
        c.unsupported("spec.usdts", "`usdts`");
    }
    crate::lists::check_lists(c, spec);
    if let Some(sel) = &spec.pod_selector {
        check_label_selector(c, "spec.podSelector", sel);
    }
    if let Some(sel) = &spec.node_selector {
        check_label_selector(c, "spec.nodeSelector", sel);
    }
    if let Some(sel) = &spec.container_selector {
        check_label_selector(c, "spec.containerSelector", sel);
        let keys = sel
            .match_labels
            .keys()
            .chain(sel.match_expressions.iter().map(|r| &r.key));
        for key in keys {
            if key != "name" && key != "repo" {
                c.field(
                    "spec.containerSelector",
                    format!("a container is selected by `name` and `repo`, not `{key}`"),
                    "select on `name` (the container's name in the pod) or `repo` (its image without tag or digest)",
                );
            }
        }
    }
    let mode = check_options(c, spec);
    check_kprobes(c, spec);
    check_tracepoints(c, spec);
    check_lsm_hooks(c, spec);
    crate::uprobes::check_uprobes(c, spec);
    mode
}

/// A label selector at `at`: label keys and the operators Kubernetes defines, each with the
/// values it takes.
fn check_label_selector(c: &mut Checker, at: &str, sel: &crate::spec::LabelSelector) {
    for key in sel.match_labels.keys() {
        if key.is_empty() {
            c.field(
                &format!("{at}.matchLabels"),
                "a label key is empty",
                "name the label, as `app: web`",
            );
        }
    }
    for (i, r) in sel.match_expressions.iter().enumerate() {
        let path = format!("{at}.matchExpressions[{i}]");
        if r.key.is_empty() {
            c.field(
                &format!("{path}.key"),
                "the label key is empty",
                "name the label the requirement is about",
            );
        }
        match (r.operator.as_str(), r.values.is_empty()) {
            ("In" | "NotIn", false) | ("Exists" | "DoesNotExist", true) => {}
            ("In" | "NotIn", true) => c.field(
                &format!("{path}.values"),
                format!("`{}` needs at least one value", r.operator),
                "list the label values under `values:`",
            ),
            ("Exists" | "DoesNotExist", false) => c.field(
                &format!("{path}.values"),
                format!("`{}` takes no values", r.operator),
                "remove `values:`",
            ),
            (other, _) => c.value(
                &format!("{path}.operator"),
                format!("`{other}` is not a label selector operator"),
                "use In, NotIn, Exists or DoesNotExist",
            ),
        }
    }
}

/// `spec.options`: the policy mode.
fn check_options(c: &mut Checker, spec: &PolicySpec) -> Mode {
    let mut mode = Mode::Enforce;
    for (i, opt) in spec.options.iter().enumerate() {
        let path = format!("spec.options[{i}]");
        match opt.name.as_str() {
            "policy-mode" => match opt.value.as_ref().map(|v| v.0.as_str()) {
                Some("enforce") => mode = Mode::Enforce,
                Some("monitor") => mode = Mode::Monitor,
                other => c.value(
                    &format!("{path}.value"),
                    format!("policy-mode `{}` is not a mode", other.unwrap_or("")),
                    "use `enforce` or `monitor`",
                ),
            },
            // Tetragon's switch away from kprobe_multi links: vigil attaches one kprobe per
            // function always, so the option asks for what it does anyway.
            "disable-kprobe-multi" => {}
            other => c.value(
                &format!("{path}.name"),
                format!("unknown option `{other}`"),
                "vigil knows the options `policy-mode` and `disable-kprobe-multi`",
            ),
        }
    }
    mode
}

fn check_kprobes(c: &mut Checker, spec: &PolicySpec) {
    for (i, k) in spec.kprobes.iter().enumerate() {
        let path = format!("spec.kprobes[{i}]");
        if crate::lists::list_name(&k.call).is_none() {
            check_symbol(
                c,
                &format!("{path}.call"),
                &k.call,
                "a kernel function or system call name",
            );
        }
        match k.return_arg_action.as_deref() {
            None => {}
            Some("TrackSock" | "UntrackSock")
                if k.r#return && k.return_arg.as_ref().is_some_and(|r| r.r#type == "sock") => {}
            Some(a @ ("TrackSock" | "UntrackSock")) => c.field(
                &format!("{path}.returnArgAction"),
                format!("{a} acts on the socket the function returns, and this hook reads no returned `sock`"),
                "add `return: true` and `returnArg: {index: 0, type: sock}`",
            ),
            Some(other) => c.value(
                &format!("{path}.returnArgAction"),
                format!("`{other}` is not a return action vigil takes"),
                "use TrackSock or UntrackSock (Post is what every return does)",
            ),
        }
        if let Some(ignore) = &k.ignore {
            let keys: Vec<String> = ignore
                .as_mapping()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(other) = keys.iter().find(|k| *k != "callNotFound") {
                c.unsupported(
                    &format!("{path}.ignore.{other}"),
                    &format!("`ignore.{other}`"),
                );
            } else if ignore
                .get("callNotFound")
                .is_some_and(|v| v.as_bool().is_none())
            {
                c.value(
                    &format!("{path}.ignore.callNotFound"),
                    "callNotFound is true or false",
                    "write `callNotFound: true` to leave the hook out where its function is missing",
                );
            }
        }
        check_args(c, &path, &k.args, true);
        for (j, a) in k.args.iter().enumerate() {
            if let Some((reason, fix)) =
                crate::args::special_arg_error(&a.r#type, &k.call, k.syscall, a.index)
            {
                c.value(&format!("{path}.args[{j}].type"), reason, fix);
            }
        }
        match (&k.return_arg, k.r#return) {
            (Some(_), false) => c.field(
                &format!("{path}.returnArg"),
                "returnArg without `return: true`",
                "add `return: true` or remove `returnArg`",
            ),
            (Some(r), true)
                if !matches!(
                    arg_class(&r.r#type),
                    Some(ArgClass::Int { .. } | ArgClass::Sock)
                ) =>
            {
                c.value(
                    &format!("{path}.returnArg.type"),
                    format!("a return value of type `{}` cannot be read", r.r#type),
                    "use an integer type such as `int`, or `sock` for a function returning a socket",
                );
            }
            _ => {}
        }
        let hook = crate::selectors::Hook {
            path: &path,
            args: &k.args,
            by_position: false,
            has_return: k.r#return,
            return_type: k.return_arg.as_ref().map(|r| r.r#type.as_str()),
            can_override: k.syscall || k.call.starts_with("security_"),
            call: &k.call,
        };
        crate::selectors::check_selectors(c, &hook, &k.selectors);
        check_message(c, &path, k.message.as_deref(), &k.tags);
    }
}

fn check_tracepoints(c: &mut Checker, spec: &PolicySpec) {
    for (i, t) in spec.tracepoints.iter().enumerate() {
        let path = format!("spec.tracepoints[{i}]");
        check_symbol(
            c,
            &format!("{path}.subsystem"),
            &t.subsystem,
            "a tracepoint subsystem",
        );
        check_symbol(c, &format!("{path}.event"), &t.event, "a tracepoint name");
        check_args(c, &path, &t.args, false);
        let hook = crate::selectors::Hook {
            path: &path,
            args: &t.args,
            by_position: true,
            has_return: false,
            return_type: None,
            can_override: false,
            call: "",
        };
        crate::selectors::check_selectors(c, &hook, &t.selectors);
        check_message(c, &path, t.message.as_deref(), &t.tags);
    }
}

fn check_lsm_hooks(c: &mut Checker, spec: &PolicySpec) {
    for (i, l) in spec.lsmhooks.iter().enumerate() {
        let path = format!("spec.lsmhooks[{i}]");
        check_symbol(
            c,
            &format!("{path}.hook"),
            &l.hook,
            "an LSM hook name such as `file_open`",
        );
        check_args(c, &path, &l.args, true);
        let hook = crate::selectors::Hook {
            path: &path,
            args: &l.args,
            by_position: false,
            has_return: false,
            return_type: None,
            can_override: true,
            call: "",
        };
        crate::selectors::check_selectors(c, &hook, &l.selectors);
        check_message(c, &path, l.message.as_deref(), &l.tags);
    }
}

/// Checks the functions and hooks the policy names against `kernel`; returns the kprobes to
/// leave out (absent, and `ignore.callNotFound` set).
fn check_kernel(c: &mut Checker, spec: &PolicySpec, kernel: &dyn KernelSymbols) -> Vec<usize> {
    let mut absent = Vec::new();
    crate::lists::check_kernel_lists(c, spec, kernel);
    for (i, k) in spec.kprobes.iter().enumerate() {
        if crate::lists::list_name(&k.call).is_some() {
            continue;
        }
        if !kprobe_function_candidates(&k.call, k.syscall)
            .iter()
            .any(|f| kernel.function(f))
        {
            let hint = if k.syscall {
                "check the system call's name (sys_<name>)"
            } else {
                "check the name in /proc/kallsyms, or set `syscall: true` for a system call"
            };
            let ignored = k
                .ignore
                .as_ref()
                .and_then(|v| v.get("callNotFound"))
                .and_then(|v| v.as_bool())
                == Some(true);
            if ignored {
                c.warn(
                    &format!("spec.kprobes[{i}].call"),
                    format!("this kernel has no function `{}`: the hook is left out (ignore.callNotFound)", k.call),
                    "nothing to do where the function exists under another kernel's name; another hook of the policy may stand for it",
                );
                absent.push(i);
                continue;
            }
            c.value(
                &format!("spec.kprobes[{i}].call"),
                format!("this kernel has no function `{}`", k.call),
                hint,
            );
        }
    }
    for (i, l) in spec.lsmhooks.iter().enumerate() {
        if !lsm_function_candidates(&l.hook)
            .iter()
            .any(|f| kernel.function(f))
        {
            c.value(
                &format!("spec.lsmhooks[{i}].hook"),
                format!("this kernel has no LSM hook `{}`", l.hook),
                "use a hook name from include/linux/lsm_hook_defs.h, without `security_`",
            );
        }
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        if kernel.tracepoint(&t.subsystem, &t.event) == Some(false) {
            c.value(
                &format!("spec.tracepoints[{i}].event"),
                format!("this kernel has no tracepoint {}/{}", t.subsystem, t.event),
                "list them with `ls /sys/kernel/tracing/events/<subsystem>`",
            );
        }
    }
    absent
}

fn is_dns_subdomain(s: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.iter().all(|b| ok_char(*b))
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
}

fn check_symbol(c: &mut Checker, path: &str, name: &str, what: &str) {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        c.value(
            path,
            format!("`{name}` is not {what}"),
            "use letters, digits and `_` only",
        );
    }
}

pub(crate) fn check_message(c: &mut Checker, hook: &str, message: Option<&str>, tags: &[String]) {
    if message.is_some_and(|m| m.len() > 256) {
        c.value(
            &format!("{hook}.message"),
            "the message is longer than 256 bytes",
            "shorten it",
        );
    }
    if tags.len() > 16 {
        c.value(
            &format!("{hook}.tags"),
            format!("{} tags; at most 16", tags.len()),
            "keep the 16 most useful tags",
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_policy_with_thousands_of_problems_reports_the_first_hundred_and_counts_the_rest() {
        let hooks = "  - call: no_such_function_here\n    syscall: false\n".repeat(5000);
        let text = format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\nspec:\n  kprobes:\n{hooks}"
        );
        let kernel = crate::kernel::RunningKernel::read().expect("/proc/kallsyms is readable");
        let errors = super::load_policy_for("many.yaml", &text, Some(&kernel)).unwrap_err();
        assert_eq!(errors.0.len(), super::MAX_REPORTED + 1);
        let last = errors.0.last().unwrap();
        assert_eq!(last.reason, "4900 more problems, not shown", "{last}");
    }
}
