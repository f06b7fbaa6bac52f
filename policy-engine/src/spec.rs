//! The TracingPolicy resource, field for field as Tetragon's CRD names it (`cilium.io/v1alpha1`)
//! and as vigil's own API group accepts it.
//!
//! Unknown fields are errors (a misspelt `matchArg` must not silently match everything), and
//! fields vigil parses but does not implement yet are refused by name in `validate`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A YAML scalar kept as text: policies write `1`, `"1"` and `-1` interchangeably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Serialize, JsonSchema)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            U(u64),
            B(bool),
        }
        Ok(Scalar(match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::U(u) => u.to_string(),
            Raw::B(b) => b.to_string(),
        }))
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scalar".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"x-kubernetes-int-or-string": true})
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Any value (fields vigil reads only to refuse them by name), kept whole by the API server.
struct AnyValue;

impl JsonSchema for AnyValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AnyValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"x-kubernetes-preserve-unknown-fields": true})
    }

    fn inline_schema() -> bool {
        true
    }
}

/// `kind:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PolicyKind {
    /// Applies to every process on the node.
    TracingPolicy,
    /// Applies to the pods of one namespace.
    TracingPolicyNamespaced,
}

/// A whole policy document.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingPolicy {
    /// `cilium.io/v1alpha1` or `vigil.dev/v1alpha1`.
    pub api_version: String,
    /// Cluster-wide or namespaced.
    pub kind: PolicyKind,
    /// Name and labels.
    pub metadata: Metadata,
    /// The hooks.
    pub spec: PolicySpec,
}

/// `metadata:`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Policy name, a DNS-1123 subdomain.
    pub name: String,
    /// Namespace of a namespaced policy.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `spec:`. Also the spec of vigil's `TracingPolicy` custom resource, whose definition (with
/// this type's schema) [`crate::crd`] generates.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, kube::CustomResource)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "TracingPolicy",
    root = "TracingPolicyResource",
    plural = "tracingpolicies",
    shortname = "vtp",
    status = "crate::crd::PolicyStatus",
    crates(kube_core = "::kube::core"),
    doc = "A vigil tracing policy, applied on every node where a vigil agent runs."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Kernel function hooks.
    #[serde(default)]
    pub kprobes: Vec<KprobeSpec>,
    /// Tracepoint hooks.
    #[serde(default)]
    pub tracepoints: Vec<TracepointSpec>,
    /// LSM hooks.
    #[serde(default)]
    pub lsmhooks: Vec<LsmHookSpec>,
    /// Named lists of functions or system calls, which a kprobe hooks all of with
    /// `call: "list:<name>"`.
    #[serde(default)]
    pub lists: Vec<ListSpec>,
    /// Policy options, `policy-mode` among them.
    #[serde(default)]
    pub options: Vec<PolicyOption>,
    /// The pods the policy applies to, by label (on a Kubernetes node); enforced in the
    /// kernel by the pods' cgroups.
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// The containers the policy applies to, by their `name` and image `repo` written as labels
    /// (Tetragon's containerSelector): only those containers' cgroups are in its scope.
    #[serde(default)]
    pub container_selector: Option<LabelSelector>,
    /// The nodes, by label, whose agents load the policy (Tetragon's nodeSelector); unset or
    /// empty: every node.
    #[serde(default)]
    pub node_selector: Option<LabelSelector>,
    /// Hooks on functions of programs and libraries (user space).
    #[serde(default)]
    pub uprobes: Vec<UprobeSpec>,
    /// usdts (likewise).
    #[serde(default)]
    #[schemars(with = "Vec<AnyValue>")]
    pub usdts: Vec<serde_yaml::Value>,
    /// Tetragon's loader: every executable file a process maps (a program, a library), with
    /// its build id, as `process_loader` events.
    #[serde(default)]
    pub loader: bool,
}

/// A Kubernetes label selector (`podSelector`): every `matchLabels` pair and every
/// `matchExpressions` requirement must hold; an empty selector selects every pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels the pod must have, with these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements on labels.
    #[serde(default)]
    pub match_expressions: Vec<LabelRequirement>,
}

/// `matchExpressions[]`: `key`, an operator (`In`, `NotIn`, `Exists`, `DoesNotExist`) and its
/// values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequirement {
    /// The label.
    pub key: String,
    /// How it is compared.
    pub operator: String,
    /// The values of `In` and `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// `spec.options[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyOption {
    /// Option name.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: Option<Scalar>,
}

/// `spec.kprobes[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KprobeSpec {
    /// Kernel function, or syscall name with `syscall: true`.
    pub call: String,
    /// `call` names a system call (`sys_openat`).
    #[serde(default)]
    pub syscall: bool,
    /// Also report the return value.
    #[serde(default)]
    pub r#return: bool,
    /// Arguments to read.
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// How to read the return value.
    #[serde(default)]
    pub return_arg: Option<ArgSpec>,
    /// Action on return (parsed so it can be refused by name).
    #[serde(default)]
    pub return_arg_action: Option<String>,
    /// In-kernel filters and actions.
    #[serde(default)]
    pub selectors: Vec<Selector>,
    /// Text for the event's `message`.
    #[serde(default)]
    pub message: Option<String>,
    /// Tags for the event.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Hook options (parsed so they can be refused by name).
    #[serde(default)]
    #[schemars(with = "Option<AnyValue>")]
    pub ignore: Option<serde_yaml::Value>,
}

/// `spec.lists[]`: a named list of system calls or kernel functions.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSpec {
    /// What `list:<name>` refers to.
    pub name: String,
    /// `syscalls` (the `values`), `generated_syscalls` (every system call) or
    /// `generated_ftrace` (the kernel functions `pattern` matches).
    #[serde(default = "syscalls_list")]
    pub r#type: String,
    /// The system calls of a `syscalls` list (`sys_dup` or `dup`).
    #[serde(default)]
    pub values: Vec<String>,
    /// The regular expression a `generated_ftrace` list's functions match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Tetragon checks the values against the kernel when set; vigil always does.
    #[serde(default)]
    pub validated: bool,
}

fn syscalls_list() -> String {
    "syscalls".into()
}

/// `spec.uprobes[]`: a function of a program or library, by symbol or by offset, on entry or
/// (`return: true`) on return.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UprobeSpec {
    /// The binary or library (absolute; `/procRoot/` stands for the host's `/proc/`, as in
    /// Tetragon's pod).
    pub path: String,
    /// Symbols to hook, each one hook.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Offsets to hook: past the symbol of the same position when there is one, else in the
    /// file.
    #[serde(default)]
    pub offsets: Vec<u64>,
    /// Reference counter offsets of USDT semaphores (parsed so they can be refused by name).
    #[serde(default)]
    pub ref_ctr_offsets: Vec<u64>,
    /// Virtual addresses (likewise).
    #[serde(default)]
    pub addrs: Vec<u64>,
    /// Hook the return, reading `returnArg`.
    #[serde(default)]
    pub r#return: bool,
    /// Arguments to read.
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// How to read the return value.
    #[serde(default)]
    pub return_arg: Option<ArgSpec>,
    /// Data to read besides arguments (likewise).
    #[serde(default)]
    #[schemars(with = "Vec<AnyValue>")]
    pub data: Vec<serde_yaml::Value>,
    /// Filters and actions.
    #[serde(default)]
    pub selectors: Vec<Selector>,
    /// Text for the event's `message`.
    #[serde(default)]
    pub message: Option<String>,
    /// Tags for the event.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `spec.tracepoints[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracepointSpec {
    /// Tracepoint subsystem (`syscalls`, `sched`, ...).
    pub subsystem: String,
    /// Tracepoint name.
    pub event: String,
    /// A raw tracepoint (parsed so it can be refused by name).
    #[serde(default)]
    pub raw: bool,
    /// Fields to read, by index in the tracepoint's format.
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// In-kernel filters and actions.
    #[serde(default)]
    pub selectors: Vec<Selector>,
    /// Text for the event's `message`.
    #[serde(default)]
    pub message: Option<String>,
    /// Tags for the event.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `spec.lsmhooks[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LsmHookSpec {
    /// LSM hook name without the `security_` prefix (`file_open`).
    pub hook: String,
    /// Arguments to read.
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// In-kernel filters and actions.
    #[serde(default)]
    pub selectors: Vec<Selector>,
    /// Text for the event's `message`.
    #[serde(default)]
    pub message: Option<String>,
    /// Tags for the event.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An argument to read (`args[]`, `returnArg`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgSpec {
    /// Position of the argument.
    pub index: u32,
    /// How to read it (`int`, `string`, `file`, ...).
    pub r#type: String,
    /// Name shown with the value in events.
    #[serde(default)]
    pub label: Option<String>,
    /// Read a whole buffer rather than the default bound.
    #[serde(default)]
    pub max_data: bool,
    /// 1-based index of the argument that holds this buffer's size.
    #[serde(default)]
    pub size_arg_index: Option<u32>,
    /// Read the value on return (parsed so it can be refused by name).
    #[serde(default)]
    pub return_copy: bool,
    /// Resolve a path relative to this fd (parsed so it can be refused by name).
    #[serde(default)]
    pub resolve: Option<String>,
}

/// One selector: filters ANDed together, then its actions.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// Argument filters.
    #[serde(default)]
    pub match_args: Vec<ArgFilter>,
    /// Return-value filters.
    #[serde(default)]
    pub match_return_args: Vec<ArgFilter>,
    /// Binary filters.
    #[serde(default)]
    pub match_binaries: Vec<ValuesFilter>,
    /// PID filters.
    #[serde(default)]
    #[serde(rename = "matchPIDs")]
    pub match_pids: Vec<PidFilter>,
    /// Namespace filters.
    #[serde(default)]
    pub match_namespaces: Vec<NamespaceFilter>,
    /// Capability filters.
    #[serde(default)]
    pub match_capabilities: Vec<CapabilityFilter>,
    /// Actions when everything above matches.
    #[serde(default)]
    pub match_actions: Vec<Action>,
    /// Namespace-change filters (parsed so they can be refused by name).
    #[serde(default)]
    #[schemars(with = "Vec<AnyValue>")]
    pub match_namespace_changes: Vec<serde_yaml::Value>,
    /// Capability-change filters (likewise).
    #[serde(default)]
    #[schemars(with = "Vec<AnyValue>")]
    pub match_capability_changes: Vec<serde_yaml::Value>,
    /// Return actions (likewise).
    #[serde(default)]
    #[schemars(with = "Vec<AnyValue>")]
    pub match_return_actions: Vec<serde_yaml::Value>,
}

/// `matchArgs[]` / `matchReturnArgs[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgFilter {
    /// The `args[].index` it tests.
    pub index: u32,
    /// How it compares.
    pub operator: String,
    /// What it compares with (any one matches).
    #[serde(default)]
    pub values: Vec<Scalar>,
}

/// `matchBinaries[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValuesFilter {
    /// `In`, `NotIn`, `Prefix`, `NotPrefix`.
    pub operator: String,
    /// Binary paths.
    #[serde(default)]
    pub values: Vec<Scalar>,
    /// Also match children (parsed so it can be refused by name).
    #[serde(default)]
    pub follow_children: bool,
}

/// `matchPIDs[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PidFilter {
    /// `In` or `NotIn`.
    pub operator: String,
    /// PIDs.
    #[serde(default)]
    pub values: Vec<Scalar>,
    /// Also match the processes these pids fork.
    #[serde(default)]
    pub follow_forks: bool,
    /// The pids are as seen inside the process's pid namespace.
    #[serde(default)]
    #[serde(rename = "isNamespacePID")]
    pub is_namespace_pid: bool,
}

/// `matchNamespaces[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceFilter {
    /// `Uts`, `Ipc`, `Mnt`, `Pid`, `PidForChildren`, `Net`, `Time`, `TimeForChildren`, `Cgroup`, `User`.
    pub namespace: String,
    /// `In` or `NotIn`.
    pub operator: String,
    /// Inode numbers, or `host_ns`.
    #[serde(default)]
    pub values: Vec<Scalar>,
}

/// `matchCapabilities[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilityFilter {
    /// `Effective`, `Inheritable` or `Permitted`.
    #[serde(default)]
    pub r#type: Option<String>,
    /// `In` or `NotIn`.
    pub operator: String,
    /// Only in a user namespace other than the host's.
    #[serde(default)]
    pub is_namespace_capability: bool,
    /// `CAP_*` names.
    #[serde(default)]
    pub values: Vec<Scalar>,
}

/// `matchActions[]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    /// `Post`, `NoPost`, `Sigkill`, `Signal`, `Override`, ...
    pub action: String,
    /// Errno for `Override` (negative).
    #[serde(default)]
    pub arg_error: Option<i64>,
    /// Signal number for `Signal`.
    #[serde(default)]
    pub arg_sig: Option<i64>,
    /// `Post` at most once per this period per process and argument set (`1m`, `30s`).
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// Rate limit scope (parsed so it can be refused by name).
    #[serde(default)]
    pub rate_limit_scope: Option<String>,
    /// Kernel stack (parsed so it can be refused by name).
    #[serde(default)]
    pub kernel_stack_trace: bool,
    /// User stack (likewise).
    #[serde(default)]
    pub user_stack_trace: bool,
    /// IMA hash (likewise).
    #[serde(default)]
    pub ima_hash: bool,
    /// fd arguments of FollowFD and friends (parsed so they can be refused by name).
    #[serde(default)]
    pub arg_fd: Option<i64>,
    /// Name argument of FollowFD (likewise).
    #[serde(default)]
    pub arg_name: Option<i64>,
    /// URL of GetUrl (likewise).
    #[serde(default)]
    pub arg_url: Option<String>,
    /// FQDN of DnsLookup (likewise).
    #[serde(default)]
    pub arg_fqdn: Option<String>,
    /// Socket argument of TrackSock (likewise).
    #[serde(default)]
    pub arg_sock: Option<i64>,
}
