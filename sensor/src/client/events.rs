//! `vigil events`: the agent's events as they happen, filtered in the agent as Tetragon's
//! `getevents` filters them (flags of one kind: any value; flags of different kinds: all).

use vigil_api::v1::{self, get_events_response::Response};

use super::{colour, failed, paint, Exit, ServerArgs};
use crate::{agent::log, stdout::outln};

/// `vigil events`.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// json: each event in Tetragon's JSON shape, one per line; compact: one readable line.
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    output: EventsFormat,
    /// Event kinds: process_exec, process_exit, process_kprobe, process_lsm, process_uprobe, process_alert
    /// (or exec, exit, kprobe, lsm, alert).
    #[arg(long = "event-type", value_name = "KIND")]
    event_types: Vec<String>,
    /// Regular expression on the process's binary.
    #[arg(long = "binary-regex", value_name = "REGEX")]
    binary_regex: Vec<String>,
    /// Regular expression on the parent's binary.
    #[arg(long = "parent-binary-regex", value_name = "REGEX")]
    parent_binary_regex: Vec<String>,
    /// Regular expression on the process's arguments.
    #[arg(long = "args-regex", value_name = "REGEX")]
    args_regex: Vec<String>,
    /// The pod's namespace ("" for processes in no pod).
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Vec<String>,
    /// Regular expression on the pod's name.
    #[arg(long = "pod-regex", value_name = "REGEX")]
    pod_regex: Vec<String>,
    /// Label selector on the pod's labels (`app=web,tier in (a, b)`).
    #[arg(long = "label", value_name = "SELECTOR")]
    labels: Vec<String>,
    /// Policy name (policy events only).
    #[arg(long = "policy-name", value_name = "NAME")]
    policy_names: Vec<String>,
    /// Process id.
    #[arg(long, value_name = "PID")]
    pid: Vec<u32>,
    /// Process id whose descendants' events pass too.
    #[arg(long = "pid-set", value_name = "PID")]
    pid_set: Vec<u32>,
    /// Only these fields of each event, as dotted paths under the event key
    /// (`process.binary,process.pid`).
    #[arg(long, value_delimiter = ',', value_name = "PATHS")]
    fields: Vec<String>,
    /// Connects and accepts of one process to one address within this many milliseconds
    /// come as one event with a count.
    #[arg(long = "aggregate-ms", value_name = "MS")]
    aggregate_ms: Option<u32>,
    #[command(flatten)]
    server: ServerArgs,
}

/// How `vigil events` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsFormat {
    /// JSON lines.
    Json,
    /// One readable line per event.
    Compact,
}

fn kind(k: &str) -> String {
    match k {
        "exec" | "exit" | "kprobe" | "lsm" | "alert" => format!("process_{k}"),
        _ => k.to_string(),
    }
}

impl EventsArgs {
    fn request(&self) -> v1::GetEventsRequest {
        let filter = v1::Filter {
            event_set: self.event_types.iter().map(|k| kind(k)).collect(),
            binary_regex: self.binary_regex.clone(),
            parent_binary_regex: self.parent_binary_regex.clone(),
            arguments_regex: self.args_regex.clone(),
            pid: self.pid.clone(),
            pid_set: self.pid_set.clone(),
            policy_names: self.policy_names.clone(),
            namespace: self.namespace.clone(),
            pod_regex: self.pod_regex.clone(),
            labels: self.labels.clone(),
        };
        let any = filter != v1::Filter::default();
        v1::GetEventsRequest {
            allow_list: if any { vec![filter] } else { Vec::new() },
            deny_list: Vec::new(),
            field_mask: (!self.fields.is_empty()).then(|| v1::FieldMask {
                include: self.fields.clone(),
                exclude: Vec::new(),
            }),
            aggregation: self
                .aggregate_ms
                .map(|window_ms| v1::Aggregation { window_ms }),
        }
    }

    /// Streams until the agent stops or the reader goes.
    pub async fn run(self) -> Exit {
        let mut client = match self.server.connect().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut stream = match client.get_events(self.request()).await {
            Ok(r) => r.into_inner(),
            Err(s) => return failed("GetEvents", &s),
        };
        let colour = colour();
        loop {
            let message = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    log("the agent ended the stream (it stopped)");
                    return Exit::Unreachable;
                }
                Err(s) => return failed("GetEvents", &s),
            };
            let printed = match message.response {
                Some(Response::Event(e)) => self.print(&e, colour),
                Some(Response::Lost(l)) => {
                    log(format!(
                        "missed {} events ({} since this stream began): this client read slower than they came",
                        l.events, l.total
                    ));
                    Ok(())
                }
                None => Ok(()),
            };
            if printed.is_err() {
                return Exit::Refused;
            }
        }
    }

    fn print(&self, e: &v1::Event, colour: bool) -> std::io::Result<()> {
        let count = if e.count > 1 {
            format!(" (×{})", e.count)
        } else {
            String::new()
        };
        match self.output {
            EventsFormat::Json => outln!("{}", e.json),
            EventsFormat::Compact => {
                let line = match serde_json::from_str::<vigil_events::Event>(&e.json) {
                    Ok(ev) => vigil_events::compact::render(&ev),
                    // A field mask can leave out what the compact line needs.
                    Err(_) => vigil_events::compact::escape(&format!(
                        "{} {} {}",
                        e.kind, e.binary, e.exec_id
                    ))
                    .into_owned(),
                };
                let code = match e.kind.as_str() {
                    "process_exec" => "32",
                    "process_exit" => "2",
                    "process_alert" => "33",
                    _ if !e.action.is_empty() && !e.action.ends_with("POST") => "31",
                    _ => "36",
                };
                outln!("{}{count}", paint(colour, code, &line))
            }
        }
    }
}
