//! One policy path: `vigil policy lint` and the running agent give every policy file the same
//! verdict and the same message, and `vigil policy explain --json` names exactly the attach
//! points the agent reports having attached. Both run on this kernel and, in the VM matrix, on
//! Debian's, where kprobes and BPF LSM change what loads and where it attaches.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use vigil_tests::{
    broken_policies_dir, require_root, rules_dir, tetragon_policies_dir, vigil_bin, Agent, TempDir,
};

/// The YAML files of `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// What one run of `vigil policy lint` says of each file: `Ok(policy name)`, or the lines
/// about the file (each starts with its path).
fn lint(files: &[PathBuf]) -> Vec<Result<String, Vec<String>>> {
    let out = Command::new(vigil_bin())
        .args(["policy", "lint"])
        .args(files)
        .output()
        .expect("run vigil policy lint");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    files
        .iter()
        .map(|f| {
            let prefix = format!("{}:", f.display());
            let about: Vec<String> = stdout
                .lines()
                .filter(|l| l.starts_with(&prefix))
                .map(str::to_string)
                .collect();
            // "<file>: ok (policy <name>, <n> hooks, mode <mode>)"
            match about.as_slice() {
                [ok] if ok.starts_with(&format!("{prefix} ok (policy ")) => {
                    let rest = &ok[prefix.len() + " ok (policy ".len()..];
                    Ok(rest.split(", ").next().unwrap().to_string())
                }
                _ => Err(about),
            }
        })
        .collect()
}

/// Copies `src` into `dir` with a modification time in the past, so the agent's next scan
/// reads it at once instead of waiting for it to settle.
fn place(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    std::fs::copy(src, &dest).unwrap();
    let f = std::fs::File::options().write(true).open(&dest).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(5))
        .unwrap();
    dest
}

/// The agent's verdict on `file`: `Ok(())` when it loaded the policy, else the log lines about
/// the file (each starts with its path), once it has said either.
fn agent_verdict(agent: &Agent, file: &Path) -> Option<Result<(), Vec<String>>> {
    // "vigil: policy <name> loaded from <file> (<n> rules)"
    let path = file.display().to_string();
    let lines = agent.log_lines();
    if lines
        .iter()
        .any(|l| l.contains(" loaded from ") && l.contains(&format!("from {path} (")))
    {
        return Some(Ok(()));
    }
    let about: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{path}:")))
        .cloned()
        .collect();
    (!about.is_empty()).then_some(Err(about))
}

#[test]
fn lint_and_the_agent_give_every_policy_file_the_same_verdict_and_message() {
    require_root();
    // What Tetragon's quickstart has envsubst fill in (its egress examples' ranges); lint and
    // the agent, started below, read them from the environment.
    std::env::set_var("PODCIDR", "10.0.0.0/16");
    std::env::set_var("SERVICECIDR", "10.96.0.0/12");
    let mut corpus = Vec::new();
    for dir in [broken_policies_dir(), rules_dir(), tetragon_policies_dir()] {
        corpus.extend(yaml_files(&dir));
    }
    assert!(
        corpus.len() > 100,
        "the corpora hold {} files",
        corpus.len()
    );

    // Lint reads every file where the agent will read it, before the agent runs (one probe of
    // the kernel for all). Its verdicts decide the batches: loaded policies take kernel slots,
    // so a batch holds up to eight, with distinct names.
    let tmp = TempDir::new("verdicts");
    let dir = tmp.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    let mut batches: Vec<Vec<(PathBuf, String)>> = Vec::new();
    let mut names_in_batch: Vec<BTreeSet<String>> = Vec::new();
    // Unique names: the corpora share some file names.
    let names: Vec<String> = corpus
        .iter()
        .enumerate()
        .map(|(i, src)| format!("{i:03}-{}", src.file_name().unwrap().to_string_lossy()))
        .collect();
    let staged: Vec<PathBuf> = corpus
        .iter()
        .zip(&names)
        .map(|(src, name)| place(src, &dir, name))
        .collect();
    let mut linted: BTreeMap<PathBuf, Result<String, Vec<String>>> = BTreeMap::new();
    for (path, verdict) in staged.iter().zip(lint(&staged)) {
        std::fs::remove_file(path).unwrap();
        linted.insert(path.clone(), verdict);
    }
    for (src, name) in corpus.iter().zip(names) {
        let policy = linted[&dir.join(&name)].clone().ok();
        let fits = |b: &BTreeSet<String>| {
            policy
                .as_ref()
                .is_none_or(|p| b.len() < 8 && !b.contains(p))
        };
        let open = (0..batches.len()).find(|&b| batches[b].len() < 40 && fits(&names_in_batch[b]));
        let at = open.unwrap_or_else(|| {
            batches.push(Vec::new());
            names_in_batch.push(BTreeSet::new());
            batches.len() - 1
        });
        batches[at].push((src.clone(), name));
        names_in_batch[at].extend(policy);
    }

    // Tetragon's examples, as staged, to count how many of them this kernel's agent loads.
    let tetragon: BTreeSet<PathBuf> = corpus
        .iter()
        .zip(&staged)
        .filter(|(src, _)| src.starts_with(tetragon_policies_dir()))
        .map(|(_, staged)| staged.clone())
        .collect();
    let mut tetragon_loaded = Vec::new();
    let agent = Agent::start(&["--policy-dir", dir.to_str().unwrap()]);
    let mut disagreements = Vec::new();
    let (mut loaded, mut refused) = (0, 0);
    for batch in &batches {
        let placed: Vec<PathBuf> = batch
            .iter()
            .map(|(src, name)| place(src, &dir, name))
            .collect();
        let linted: Vec<_> = placed.iter().map(|p| linted[p].clone()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let verdicts: Vec<_> = placed
            .iter()
            .map(|p| loop {
                if let Some(v) = agent_verdict(&agent, p) {
                    break v;
                }
                assert!(
                    Instant::now() < deadline,
                    "the agent said nothing of {} in 30 s:\n{}",
                    p.display(),
                    agent.log_lines().join("\n")
                );
                std::thread::sleep(Duration::from_millis(50));
            })
            .collect();
        for ((file, lint), agent) in placed.iter().zip(linted).zip(verdicts) {
            match (&lint, &agent) {
                (Ok(_), Ok(())) => {
                    loaded += 1;
                    if tetragon.contains(file) {
                        tetragon_loaded.push(file.clone());
                    }
                }
                (Err(l), Err(a)) if l == a => refused += 1,
                _ => disagreements.push(format!(
                    "{}:\n  lint:  {lint:?}\n  agent: {agent:?}",
                    file.display()
                )),
            }
        }
        let removals = agent
            .log_lines()
            .iter()
            .filter(|l| l.contains(" deleted)"))
            .count();
        let loaded_here = placed
            .iter()
            .filter(|p| matches!(agent_verdict(&agent, p), Some(Ok(()))))
            .count();
        for p in &placed {
            std::fs::remove_file(p).unwrap();
        }
        // The next batch starts from an empty table.
        if loaded_here > 0 {
            agent.wait_for_log(" deleted)", removals + loaded_here - 1);
        }
    }
    let run = agent.stop();
    eprintln!(
        "Tetragon's example policies the agent loaded on this kernel: {} of {}",
        tetragon_loaded.len(),
        tetragon.len()
    );
    // Where kprobes and trampolines exist (the VM's kernel), nine in ten of them load; the
    // rest are refused by name (imaHash, usdts, binaries at paths this system does not have,
    // a function this kernel has only inline).
    let hooks = &vigil_tests::kernels::current().hooks;
    if hooks.contains(&vigil_tests::kernels::Hook::Kprobe)
        && hooks.contains(&vigil_tests::kernels::Hook::FmodRet)
    {
        let refused: Vec<(&PathBuf, &Result<String, Vec<String>>)> = tetragon
            .iter()
            .filter(|p| !tetragon_loaded.contains(p))
            .map(|p| (p, &linted[p]))
            .collect();
        assert!(
            tetragon_loaded.len() >= 52,
            "{} of Tetragon's {} examples loaded; refused: {refused:#?}",
            tetragon_loaded.len(),
            tetragon.len()
        );
    }
    assert!(
        disagreements.is_empty(),
        "lint and the agent disagree on {} files:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        loaded >= 9 && refused >= 43,
        "{loaded} loaded, {refused} refused"
    );
    assert_eq!(run.stats["ringbuf_drops"]["total"], 0, "{}", run.stats);
}

/// `explain --json`'s hooks of one policy file: hook path to (hook, attach point).
fn explained(file: &Path) -> BTreeMap<String, (String, String)> {
    let out = Command::new(vigil_bin())
        .args(["policy", "explain", "--json"])
        .arg(file)
        .output()
        .expect("run vigil policy explain");
    assert!(
        out.status.success(),
        "{}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let hooks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    hooks
        .iter()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap().to_string();
            (s("path"), (s("hook"), s("attach")))
        })
        .collect()
}

#[test]
fn explain_names_exactly_what_the_agent_attached_for_each_shipped_policy() {
    require_root();
    let shipped = yaml_files(&rules_dir());
    let agent = Agent::start(&["--policy-dir", rules_dir().to_str().unwrap()]);
    let lines = agent.log_lines();
    let run = agent.stop();
    // "policy <name> loaded from <file> (<n> rules)", then "  <path> <hook>: attached <point>"
    // for each hook.
    let mut attached: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    let mut current = None;
    for l in &lines {
        let l = l.strip_prefix("vigil: ").unwrap_or(l);
        if let Some(rest) = l
            .strip_prefix("policy ")
            .filter(|r| r.contains(" loaded from "))
        {
            let file = rest.split(" loaded from ").nth(1).unwrap();
            let file = file.rsplit_once(" (").unwrap().0.to_string();
            attached.entry(file.clone()).or_default();
            current = Some(file);
        } else if let (Some(file), Some((head, point))) = (
            &current,
            l.strip_prefix("  ")
                .and_then(|r| r.split_once(": attached ")),
        ) {
            let (path, hook) = head.split_once(' ').unwrap();
            attached
                .get_mut(file)
                .unwrap()
                .insert(path.to_string(), (hook.to_string(), point.to_string()));
        } else {
            current = None;
        }
    }
    assert_eq!(
        attached.len(),
        shipped.len(),
        "the agent did not load every shipped policy:\n{}",
        lines.join("\n")
    );
    for file in &shipped {
        let key = file.display().to_string();
        let agent_said = attached
            .get(&key)
            .unwrap_or_else(|| panic!("no attach report for {key}:\n{}", lines.join("\n")));
        assert!(!agent_said.is_empty(), "{key}: no hooks reported");
        assert_eq!(&explained(file), agent_said, "{key}");
    }
    assert_eq!(run.stats["ringbuf_drops"]["total"], 0, "{}", run.stats);
}
