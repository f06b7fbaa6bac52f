//! Where a policy tracepoint's fields are: the layout of its first fields, from the
//! tracepoint's `format` in tracefs, and the slots of tracepoints and of raw tracepoints (a
//! program each: a tracepoint program cannot tell which tracepoint runs it).
//!
//! The layout is the tracepoint's, not a policy's: register `r` holds field
//! `COMMON_FIELDS + r` (the value of an integer, the address of an array or of the bytes a
//! `__data_loc` field places), so every policy on a tracepoint reads it through one layout and
//! each hook names the registers of the fields it declares.

use std::sync::Mutex;

use vigil_bpf_kprobes::abi::{self, tp_field, TpField, TpFields};
use vigil_policy_engine::tracepoints::{TracepointTarget, COMMON_FIELDS};

/// The layout a tracepoint's program reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracepointLayout {
    /// Registers 0..HOOK_ARGS: fields COMMON_FIELDS.. of the record.
    pub fields: TpFields,
    /// The fields that are pointers (their register holds the pointer itself).
    pub pointers: [bool; abi::HOOK_ARGS],
}

fn tracefs() -> Result<&'static str, String> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|p| std::path::Path::new(p).join("events").is_dir())
        .ok_or_else(|| "tracefs is not mounted: a tracepoint's fields cannot be read".to_string())
}

/// The layout of tracepoint `t` on this kernel.
pub fn layout(t: &TracepointTarget) -> Result<TracepointLayout, String> {
    let dir = format!("{}/events/{}/{}", tracefs()?, t.subsystem, t.event);
    let read = |name: &str| {
        vigil_safe_fs::read_trusted(std::path::Path::new(&format!("{dir}/{name}")), 1 << 16)
            .map_err(|e| format!("{dir}/{name}: {e}"))
    };
    parse(&read("format")?)
}

/// The layout a `format` text gives.
fn parse(format: &str) -> Result<TracepointLayout, String> {
    let mut out = TracepointLayout {
        fields: TpFields::default(),
        pointers: [false; abi::HOOK_ARGS],
    };
    let fields = format
        .lines()
        .filter_map(|l| l.trim().strip_prefix("field:"))
        .skip(COMMON_FIELDS as usize)
        .take(abi::HOOK_ARGS);
    for (r, f) in fields.enumerate() {
        let mut decl = "";
        let (mut off, mut size) = (None, None);
        for part in f.split(';').map(str::trim) {
            if let Some(v) = part.strip_prefix("offset:") {
                off = v.parse::<u16>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse::<u8>().ok();
            } else if decl.is_empty() {
                decl = part;
            }
        }
        let (Some(off), Some(size)) = (off, size) else {
            return Err(format!(
                "tracepoint format field `{f}` has no offset or size"
            ));
        };
        let kind = if decl.starts_with("__data_loc") {
            tp_field::DATA_LOC
        } else if decl.ends_with(']') {
            tp_field::ARRAY
        } else {
            out.pointers[r] = decl.contains('*');
            tp_field::INT
        };
        out.fields.f[r] = TpField { off, kind, size };
    }
    Ok(out)
}

/// The tracepoints and the raw tracepoints given a slot, by `subsystem/event`: a slot is kept
/// for the agent's life.
static SLOTS: Mutex<[Vec<String>; 2]> = Mutex::new([Vec::new(), Vec::new()]);

/// The slot of tracepoint `t` among those of its kind (given on first use), or why there is
/// none left.
pub fn slot(t: &TracepointTarget) -> Result<u8, String> {
    let name = format!("{}/{}", t.subsystem, t.event);
    let mut all = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    let slots = &mut all[t.raw as usize];
    if let Some(i) = slots.iter().position(|s| *s == name) {
        return Ok(i as u8);
    }
    if slots.len() == abi::TP_SLOTS {
        return Err(format!(
            "vigil attaches policies to {} {}tracepoints at most ({} already taken until the agent restarts); hook {name}'s function with a kprobe",
            abi::TP_SLOTS,
            if t.raw { "raw " } else { "" },
            slots.join(", ")
        ));
    }
    slots.push(name);
    Ok((slots.len() - 1) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS_ENTER: &str = "name: sys_enter\nID: 21\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n";
    const EXEC: &str = "format:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:const char * name;\toffset:16;\tsize:8;\tsigned:0;\n";

    #[test]
    fn fields_after_the_common_ones_are_laid_out_by_kind() {
        let l = parse(SYS_ENTER).unwrap();
        assert_eq!(
            l.fields.f[0],
            TpField {
                off: 8,
                kind: tp_field::INT,
                size: 8
            }
        );
        assert_eq!(
            l.fields.f[1],
            TpField {
                off: 16,
                kind: tp_field::ARRAY,
                size: 48
            }
        );
        assert_eq!(l.fields.f[2].kind, tp_field::NONE);
        let l = parse(EXEC).unwrap();
        assert_eq!(
            l.fields.f[0],
            TpField {
                off: 8,
                kind: tp_field::DATA_LOC,
                size: 4
            }
        );
        assert_eq!(
            l.fields.f[1],
            TpField {
                off: 12,
                kind: tp_field::INT,
                size: 4
            }
        );
        assert_eq!(l.pointers, [false, false, true, false, false]);
    }
}
