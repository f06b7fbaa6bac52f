//! What the kernel offers policies ([`KernelView`]), and the policies of a start, read and
//! prepared before the agent loads its programs ([`StartingPolicies`]).

use super::*;

/// What the kernel offers policies: its program kinds and, where it can be read, its
/// functions.
pub(super) struct KernelView {
    caps: KernelCaps,
    pub(super) kernel: Option<RunningKernel>,
    /// When `kernel` was read.
    kernel_read: Option<std::time::Instant>,
}

impl KernelView {
    pub(super) fn read(btf: &str) -> Self {
        let mut view = KernelView {
            caps: crate::probe::run(btf).caps(),
            kernel: None,
            kernel_read: None,
        };
        view.refresh();
        view
    }

    /// Reads the kernel's functions as they are now (a module loaded since may add some), as
    /// `vigil policy lint` reads them; at most every few seconds, and never holding two copies
    /// (the table is tens of megabytes).
    pub(super) fn refresh(&mut self) {
        if self
            .kernel_read
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5))
        {
            return;
        }
        self.kernel = None;
        self.kernel = RunningKernel::read().ok();
        self.kernel_read = Some(std::time::Instant::now());
    }

    /// Reads `path` through the gate every reader of policies goes through, then validates,
    /// compiles and plans it, exactly as `vigil policy lint` and `explain` do.
    pub(super) fn prepare(&self, path: &Path, overrides: &Overrides) -> PreparedFile {
        let stamp = stamp(path);
        let kernel = Kernel {
            caps: self.caps,
            symbols: self.kernel.as_ref().map(|k| k as &dyn KernelSymbols),
        };
        let prepared = vigil_policy_engine::prepare_as(path, &kernel, &|n| overrides.mode(n))
            .map_err(|e| PolicyLoadError::Refused(e.to_string()));
        PreparedFile {
            path: path.to_path_buf(),
            stamp,
            prepared,
        }
    }
}

impl KernelView {
    /// Prepares a policy that is not a file (a Kubernetes object's), through the same gate,
    /// validation and plan as a file's; `source` names it in errors.
    /// A namespaced object's policy is named `namespace/name`.
    pub(super) fn prepare_text(
        &self,
        source: &str,
        text: &str,
        namespace: Option<&str>,
        overrides: &Overrides,
    ) -> PreparedFile {
        let kernel = Kernel {
            caps: self.caps,
            symbols: self.kernel.as_ref().map(|k| k as &dyn KernelSymbols),
        };
        let full = |n: &str| match namespace {
            Some(ns) => format!("{ns}/{n}"),
            None => n.to_string(),
        };
        let mut prepared = vigil_policy_engine::check_yaml(source, text, &Limits::POLICY)
            .map_err(|e| vigil_policy_engine::PolicyErrors(vec![e]))
            .and_then(|()| {
                vigil_policy_engine::prepare_text_as(source, text, &kernel, &|n| {
                    overrides.mode(&full(n))
                })
            })
            .map_err(|e| PolicyLoadError::Refused(e.to_string()));
        if let Ok(p) = prepared.as_mut() {
            p.policy.name = full(&p.policy.name);
        }
        PreparedFile {
            path: PathBuf::from(source),
            stamp: Some((SystemTime::now(), text.len() as u64)),
            prepared,
        }
    }
}

/// The policies of a start, read and prepared before the agent loads its programs.
pub struct StartingPolicies {
    view: KernelView,
    dirs: Vec<PathBuf>,
    files: Vec<PreparedFile>,
    state: Option<PolicyState>,
    overrides: Overrides,
}

impl StartingPolicies {
    /// Reads and prepares the files named with `--policy`, then those of `dir`, then the
    /// policies added through the API (in `state`), each in the mode and state the API set. A
    /// named file that is missing, unreadable or refused is an error, in one line: the agent
    /// does not start without a policy it was asked for.
    pub fn read(
        btf: &str,
        named: &[PathBuf],
        dir: Option<PathBuf>,
        state: Option<PolicyState>,
    ) -> Result<Self> {
        let view = KernelView::read(btf);
        let overrides = match &state {
            Some(s) => s.overrides()?,
            None => Overrides::default(),
        };
        let dirs: Vec<PathBuf> = dir
            .into_iter()
            .chain(state.as_ref().map(|s| s.policies_dir().to_path_buf()))
            .collect();
        let mut files = Vec::new();
        for path in named {
            let file = view.prepare(path, &overrides);
            if let Err(e) = &file.prepared {
                bail!(
                    "--policy {}: {}",
                    path.display(),
                    first_line(&e.to_string())
                );
            }
            files.push(file);
        }
        for dir in &dirs {
            for path in policy_files(dir)? {
                if !named.contains(&path) {
                    files.push(view.prepare(&path, &overrides));
                }
            }
        }
        Ok(StartingPolicies {
            view,
            dirs,
            files,
            state,
            overrides,
        })
    }

    /// Whether there was no policy to read.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The program families the prepared policies attach with.
    pub fn needs(&self) -> Vec<ProgramNeed> {
        let mut needs = Vec::new();
        // A list hook needs what its members attach with.
        let mechanisms = self
            .files
            .iter()
            .filter_map(|f| f.prepared.as_ref().ok())
            .flat_map(|p| &p.hooks)
            .flat_map(|h| match &h.plan.mechanism {
                Mechanism::List(each) => each.iter().map(|(_, m)| m).collect::<Vec<_>>(),
                m => vec![m],
            });
        for mechanism in mechanisms {
            let need = match mechanism {
                m @ (Mechanism::Lsm(_)
                | Mechanism::FmodRet(_)
                | Mechanism::SyscallTracepoints(_)) => match FileOpenVia::of(m) {
                    Some(via) => ProgramNeed::FileOpen(via),
                    None => continue,
                },
                Mechanism::Kprobe(_) => ProgramNeed::Kprobe,
                Mechanism::Kretprobe(_) => ProgramNeed::Kretprobe,
                Mechanism::Uprobe { ret, .. } => ProgramNeed::Uprobe { ret: *ret },
                Mechanism::SyscallEnter(_) => ProgramNeed::SyscallEnter,
                Mechanism::SockState(_) => ProgramNeed::SockState,
                // Loaded when first attached (few policies use them; their runner verifies
                // then).
                Mechanism::NotInKernel(_) | Mechanism::List(_) | Mechanism::Tracepoint(_) => {
                    continue
                }
            };
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
        needs
    }

    /// Enforces the prepared policies. A named file the kernel then refuses stops the start
    /// (the error says why); a file of the directory is refused on its own.
    pub fn start(
        self,
        sensor: &mut LoadedObject,
        named: &[PathBuf],
        pods: Option<ScopeSource>,
    ) -> Result<PolicyManager> {
        let mut m = PolicyManager {
            table: PolicyTable::new(sensor.ebpf_mut())?,
            view: self.view,
            dirs: self.dirs,
            files: BTreeMap::new(),
            attached: false,
            state: self.state,
            overrides: self.overrides,
            load_errors: 0,
        };
        if let Some(src) = pods {
            m.table.scopes.set_source(src);
        }
        for file in self.files {
            let path = file.path.clone();
            let is_named = named.contains(&path);
            if let Err(reason) = m.apply(sensor, file, !is_named) {
                if is_named {
                    bail!("--policy {}: {}", path.display(), first_line(&reason));
                }
            }
        }
        m.release_file_open(sensor);
        Ok(m)
    }
}

/// The first line of a refusal, and how many more there are: a start that stops says it in
/// one line, and `vigil policy lint` lists them all.
fn first_line(reason: &str) -> String {
    let mut lines = reason.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("refused").trim().to_string();
    match lines.count() {
        0 => first,
        n => format!("{first} (and {n} more lines: `vigil policy lint` lists every problem)"),
    }
}
