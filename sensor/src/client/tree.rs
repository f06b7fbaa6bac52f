//! `vigil tree`: a process's ancestors and descendants, with their events, drawn as a tree.

use serde_json::json;
use vigil_api::v1;
use vigil_store::{Searcher, TreeNode};

use super::{colour, failed, paint, search::SourceArgs, Exit};
use crate::{agent::log, stdout::outln};

/// How a tree prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeFormat {
    /// Drawn with lines, each process with its events.
    Text,
    /// One JSON object per process, in drawing order, with its depth and events.
    Json,
}

/// `vigil tree`.
#[derive(clap::Args, Debug)]
pub struct TreeArgs {
    /// The process (its exec id, as events carry it).
    exec_id: String,
    /// Only the processes, without their events.
    #[arg(long)]
    no_events: bool,
    /// text or json.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: TreeFormat,
    #[command(flatten)]
    source: SourceArgs,
}

fn node_of(p: v1::TreeProcess) -> TreeNode {
    TreeNode {
        process: vigil_store::ProcessRow {
            exec_id: p.exec_id,
            parent_exec_id: p.parent_exec_id,
            pid: p.pid,
            uid: p.uid,
            binary: p.binary,
            arguments: p.arguments,
            start_time: p.start_time,
            namespace: Some(p.namespace).filter(|s| !s.is_empty()),
            pod: Some(p.pod).filter(|s| !s.is_empty()),
        },
        depth: p.depth,
        events: p
            .events
            .into_iter()
            .map(|e| vigil_store::StoredEvent {
                id: 0,
                time_ns: e.time_ns,
                json: e.json,
            })
            .collect(),
    }
}

impl TreeArgs {
    /// Fetches and prints the tree.
    pub async fn run(self) -> Exit {
        if self.source.elasticsearch.is_some() {
            log("error: --elasticsearch: a process tree is drawn from the node's store: ask the agent, or --store");
            return Exit::Refused;
        }
        let nodes = match self.source.store_path() {
            Some(db) => {
                let found =
                    Searcher::open(db).and_then(|mut s| s.tree(&self.exec_id, !self.no_events));
                match found {
                    Ok(Some(nodes)) => nodes,
                    Ok(None) => {
                        log(format!(
                            "error: the store has no process {}",
                            vigil_events::compact::escape(&self.exec_id)
                        ));
                        return Exit::Refused;
                    }
                    Err(e) => {
                        log(format!("error: {e}"));
                        return Exit::Refused;
                    }
                }
            }
            None => {
                let mut client = match self.source.server().connect().await {
                    // One message holds one process's events: up to 8 MiB of them.
                    Ok(c) => c.max_decoding_message_size(64 << 20),
                    Err(e) => return e,
                };
                let req = v1::ProcessTreeRequest {
                    exec_id: self.exec_id.clone(),
                    events: !self.no_events,
                };
                let mut stream = match client.process_tree(req).await {
                    Ok(r) => r.into_inner(),
                    Err(s) => return failed("ProcessTree", &s),
                };
                let mut nodes = Vec::new();
                loop {
                    match stream.message().await {
                        Ok(Some(m)) => nodes.extend(m.process.map(node_of)),
                        Ok(None) => break,
                        Err(s) => return failed("ProcessTree", &s),
                    }
                }
                nodes
            }
        };
        let printed = match self.output {
            TreeFormat::Json => nodes.iter().try_for_each(|n| {
                let events: Vec<serde_json::Value> = n
                    .events
                    .iter()
                    .map(|e| serde_json::from_str(&e.json).unwrap_or(serde_json::Value::Null))
                    .collect();
                outln!(
                    "{}",
                    super::search::terminal_safe(
                        &json!({"process": n.process, "depth": n.depth, "events": events})
                            .to_string()
                    )
                )
            }),
            TreeFormat::Text => draw(&nodes, colour())
                .iter()
                .try_for_each(|l| outln!("{l}")),
        };
        match printed {
            Ok(()) => Exit::Ok,
            Err(_) => Exit::Refused,
        }
    }
}

/// The tree's lines: each process under its parent, its events first (`·`), then its children,
/// the process asked for marked.
pub fn draw(nodes: &[TreeNode], colour: bool) -> Vec<String> {
    let Some(min) = nodes.iter().map(|n| n.depth).min() else {
        return Vec::new();
    };
    let esc = |s: &str| vigil_events::compact::escape(s).into_owned();
    let mut lines = Vec::new();
    // Whether each level still has a sibling to come: its column keeps a `│`.
    let mut open: Vec<bool> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let level = (n.depth - min) as usize;
        let last = !nodes[i + 1..]
            .iter()
            .take_while(|m| m.depth >= n.depth)
            .any(|m| m.depth == n.depth);
        open.truncate(level);
        let mut prefix = String::new();
        for (l, more) in open.iter().enumerate() {
            if l > 0 {
                prefix.push_str(if *more { "│  " } else { "   " });
            }
        }
        if level > 0 {
            prefix.push_str(if last { "└─ " } else { "├─ " });
        }
        open.push(!last);
        let p = &n.process;
        let pod = match (&p.namespace, &p.pod) {
            (Some(ns), Some(pod)) => format!(" [{}/{}]", esc(ns), esc(pod)),
            _ => String::new(),
        };
        let mark = if n.depth == 0 { "  ◀" } else { "" };
        let title = format!(
            "{} {} (pid {}, uid {}){pod}  {}",
            esc(&p.binary),
            esc(&p.arguments),
            p.pid,
            p.uid,
            esc(&p.exec_id)
        );
        lines.push(format!(
            "{prefix}{}{mark}",
            paint(colour, if n.depth == 0 { "1" } else { "0" }, &title)
        ));
        // The events hang under the process, above its children: the columns of the levels
        // still open, then this process's own line down to its children, if any.
        let mut below: String = open
            .iter()
            .skip(1)
            .map(|more| if *more { "│  " } else { "   " })
            .collect();
        below.push_str(if has_children(nodes, i) {
            "│  "
        } else {
            "   "
        });
        for e in &n.events {
            let line = serde_json::from_str::<vigil_events::Event>(&e.json)
                .map(|ev| {
                    format!(
                        "{} {}",
                        esc(ev.time.get(11..23).unwrap_or(&ev.time)),
                        vigil_events::compact::render(&ev)
                    )
                })
                .unwrap_or_else(|_| esc(&e.json));
            lines.push(format!("{below}· {line}"));
        }
    }
    lines
}

fn has_children(nodes: &[TreeNode], i: usize) -> bool {
    nodes
        .get(i + 1)
        .is_some_and(|next| next.depth == nodes[i].depth + 1)
}
