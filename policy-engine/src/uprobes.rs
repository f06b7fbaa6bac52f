//! Uprobes (`spec.uprobes`): hooks on functions of programs and libraries, in user space.
//!
//! Each symbol (or offset) of a uprobe is one hook: a [`HookRule`] with its [`UprobeTarget`],
//! whose arguments are read from the registers of the calling convention and whose pointers are
//! user memory, and whose selectors are the kprobes' (the same kernel evaluator runs them).
//! The kernel attaches a uprobe to a file (by inode), so the hook sees every process that runs
//! that file's code, in any mount namespace, and no process that runs a copy of it.
//!
//! What a uprobe reads is what a function's registers hold: integers, and strings or buffers
//! they point to. Kernel objects (`file`, `sock`, ...) are refused by name. On a machine
//! (`vigil policy lint`, the agent) the binary must exist, be ELF, and define each symbol.

use std::{io::Read, os::unix::fs::OpenOptionsExt};

use object::{Object, ObjectSection, ObjectSymbol};

use crate::{
    args::{arg_class, check_args, ArgClass},
    compile::CompileError,
    hook_rule::{generic_hook, HookRule, UprobeTarget},
    spec::{KprobeSpec, PolicySpec, UprobeSpec},
    validate::Checker,
};

/// How a policy writes the host's `/proc` inside Tetragon's pod.
const PROC_ROOT: &str = "/procRoot/";

/// The file the kernel attaches to for a policy's `path`: `/procRoot/` (Tetragon's mount of the
/// host's `/proc`) is read as `/proc/`, so `/procRoot/1/root/usr/bin/bash` is init's view of
/// the file.
pub fn attach_file(path: &str) -> String {
    match path.strip_prefix(PROC_ROOT) {
        Some(rest) => format!("/proc/{rest}"),
        None => path.to_string(),
    }
}

/// Binaries larger than this are not read to check their symbols.
const MAX_BINARY: u64 = 1 << 30;

/// Argument types a uprobe reads: integers, and the strings and buffers they point to.
fn readable(t: &str) -> bool {
    // A capability set is read through a kernel pointer: never from a user register.
    (matches!(arg_class(t), Some(ArgClass::Int { .. })) && !crate::args::CAP_TYPES.contains(&t))
        || matches!(t, "string" | "char_buf" | "nop")
}

pub(crate) fn check_uprobes(c: &mut Checker, spec: &PolicySpec) {
    for (i, u) in spec.uprobes.iter().enumerate() {
        let path = format!("spec.uprobes[{i}]");
        if !u.path.starts_with('/') || u.path.contains('\0') {
            c.value(
                &format!("{path}.path"),
                format!("`{}` is not an absolute path", u.path),
                "name the binary or library by its absolute path, e.g. /usr/bin/bash",
            );
        }
        if u.symbols.is_empty() && u.offsets.is_empty() {
            c.field(
                &path,
                "a uprobe names neither `symbols` nor `offsets`",
                "add `symbols: [<function>]`, or `offsets:` in the file",
            );
        }
        if !u.symbols.is_empty() && !u.offsets.is_empty() && u.offsets.len() != u.symbols.len() {
            c.field(
                &format!("{path}.offsets"),
                format!(
                    "{} offsets for {} symbols; with symbols, each offset is past the symbol at its position",
                    u.offsets.len(),
                    u.symbols.len()
                ),
                "give one offset per symbol, or remove `offsets`",
            );
        }
        for (j, s) in u.symbols.iter().enumerate() {
            if s.is_empty() || s.len() > 255 || s.bytes().any(|b| b <= b' ' || b == 0x7f) {
                c.value(
                    &format!("{path}.symbols[{j}]"),
                    format!("`{s}` is not a symbol name"),
                    "write the function's name as `nm -D` prints it, without a version",
                );
            }
        }
        for (field, present, feature) in [
            (
                "refCtrOffsets",
                !u.ref_ctr_offsets.is_empty(),
                "`refCtrOffsets` (USDT semaphores)",
            ),
            ("addrs", !u.addrs.is_empty(), "`addrs`"),
            ("data", !u.data.is_empty(), "`data`"),
        ] {
            if present {
                c.unsupported(&format!("{path}.{field}"), feature);
            }
        }
        check_args(c, &path, &u.args, true);
        for (j, a) in u.args.iter().enumerate() {
            if arg_class(&a.r#type).is_some() && !readable(&a.r#type) {
                c.value(
                    &format!("{path}.args[{j}].type"),
                    format!("a uprobe cannot read a `{}`: it is a kernel object, and a function in user space is passed none", a.r#type),
                    "read it as an integer, `string` or `char_buf`",
                );
            }
        }
        match (&u.return_arg, u.r#return) {
            (Some(_), false) => c.field(
                &format!("{path}.returnArg"),
                "returnArg without `return: true`",
                "add `return: true` or remove `returnArg`",
            ),
            (None, true) => c.field(
                &format!("{path}.return"),
                "`return: true` without `returnArg` saying how to read the value",
                "add `returnArg: {index: 0, type: int}` (or `string` for a function returning one)",
            ),
            (Some(r), true)
                if !(matches!(arg_class(&r.r#type), Some(ArgClass::Int { .. }))
                    || r.r#type == "string") =>
            {
                c.value(
                    &format!("{path}.returnArg.type"),
                    format!(
                        "a uprobe's return value of type `{}` cannot be read",
                        r.r#type
                    ),
                    "use an integer type, or `string` for a function returning one",
                );
            }
            _ => {}
        }
        let hook = crate::selectors::Hook {
            path: &path,
            args: &u.args,
            by_position: false,
            has_return: u.r#return,
            return_type: u.return_arg.as_ref().map(|r| r.r#type.as_str()),
            can_override: false,
            call: "",
        };
        crate::selectors::check_selectors(c, &hook, &u.selectors);
        crate::validate::check_message(c, &path, u.message.as_deref(), &u.tags);
    }
}

/// On this machine: every uprobe's binary exists, is ELF, and defines its symbols.
pub(crate) fn check_binaries(c: &mut Checker, spec: &PolicySpec) {
    for (i, u) in spec.uprobes.iter().enumerate() {
        let file = attach_file(&u.path);
        let elf = match read_binary(&file) {
            Ok(bytes) => bytes,
            Err(reason) => {
                c.value(
                    &format!("spec.uprobes[{i}].path"),
                    reason,
                    elsewhere(&file).map_or_else(
                        || "install the program or library, or correct the path".to_string(),
                        |found| format!("on this machine it is {found}"),
                    ),
                );
                continue;
            }
        };
        let obj = match object::File::parse(&*elf) {
            Ok(o) => o,
            Err(e) => {
                c.value(
                    &format!("spec.uprobes[{i}].path"),
                    format!("{file} is not an ELF binary ({e})"),
                    "name the program or shared library itself, not a script or a link to one",
                );
                continue;
            }
        };
        for (j, s) in u.symbols.iter().enumerate() {
            if symbol_offset(&obj, s).is_none() {
                c.value(
                    &format!("spec.uprobes[{i}].symbols[{j}]"),
                    format!("{file} defines no function `{s}`"),
                    format!("list what it defines with `nm -D {file}`"),
                );
            }
        }
    }
}

/// The bytes of the regular file at `file`, opened without blocking (a FIFO planted at the path
/// must not hang the check).
fn read_binary(file: &str) -> Result<Vec<u8>, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(file)
        .map_err(|e| format!("cannot open {file}: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("{file}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{file} is not a regular file"));
    }
    if meta.len() > MAX_BINARY {
        return Err(format!("{file} is larger than 1 GiB"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_BINARY)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {file}: {e}"))?;
    Ok(bytes)
}

/// Where a library named by a missing path is on this machine: the same name in the
/// directories the dynamic linker searches (`/lib64/libc.so.6` is
/// `/usr/lib/x86_64-linux-gnu/libc.so.6` on Debian).
fn elsewhere(file: &str) -> Option<String> {
    let name = std::path::Path::new(file).file_name()?;
    [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/lib64",
        "/usr/lib",
        "/usr/bin",
        "/usr/sbin",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join(name))
    .find(|p| p.is_file() && p.to_str() != Some(file))
    .map(|p| p.display().to_string())
}

/// The file offset of a defined symbol, as the kernel places a uprobe (the symbol's address
/// within its section, plus the section's place in the file).
pub fn symbol_offset(obj: &object::File<'_>, name: &str) -> Option<u64> {
    let sym = obj
        .symbols()
        .chain(obj.dynamic_symbols())
        .find(|s| s.is_definition() && s.name() == Ok(name))?;
    match obj.kind() {
        object::ObjectKind::Dynamic | object::ObjectKind::Executable => {
            let section = obj.section_by_index(sym.section_index()?).ok()?;
            let (offset, _) = section.file_range()?;
            sym.address()
                .checked_sub(section.address())?
                .checked_add(offset)
        }
        _ => Some(sym.address()),
    }
}

/// Every uprobe of `spec` as hooks: one per symbol, or per offset when it names none.
pub(crate) fn compile_uprobes(spec: &PolicySpec, monitor: bool) -> Compiled {
    let mut out = Compiled::default();
    for (i, u) in spec.uprobes.iter().enumerate() {
        for (call, symbol, offset) in places(u) {
            let path = format!("spec.uprobes[{i}]");
            let k = KprobeSpec {
                call,
                syscall: false,
                r#return: u.r#return,
                args: u.args.clone(),
                return_arg: u.return_arg.clone(),
                return_arg_action: None,
                selectors: u.selectors.clone(),
                message: u.message.clone(),
                tags: u.tags.clone(),
                ignore: None,
            };
            match generic_hook(&path, &k, monitor) {
                Ok(mut h) => {
                    h.uprobe = Some(UprobeTarget {
                        path: u.path.clone(),
                        file: attach_file(&u.path),
                        symbol,
                        offset,
                    });
                    out.hooks.push(h);
                }
                Err(e) => out.errors.extend(e),
            }
        }
    }
    out
}

/// What compiling the uprobes gave.
#[derive(Default)]
pub(crate) struct Compiled {
    pub hooks: Vec<HookRule>,
    pub errors: Vec<CompileError>,
}

/// Each place a uprobe names: its symbols (each with the offset at its position), or its
/// offsets in the file; with the hook's `call` (the symbol, or the offset in hex).
fn places(u: &UprobeSpec) -> Vec<(String, Option<String>, u64)> {
    if u.symbols.is_empty() {
        return u
            .offsets
            .iter()
            .map(|&o| (format!("{o:#x}"), None, o))
            .collect();
    }
    u.symbols
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let off = u.offsets.get(j).copied().unwrap_or(0);
            (s.clone(), Some(s.clone()), off)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procroot_is_the_hosts_proc_and_other_paths_are_kept() {
        assert_eq!(
            attach_file("/procRoot/1/root/usr/bin/bash"),
            "/proc/1/root/usr/bin/bash"
        );
        assert_eq!(attach_file("/usr/bin/bash"), "/usr/bin/bash");
        assert_eq!(attach_file("/procRootx/1"), "/procRootx/1");
    }

    #[test]
    fn a_symbol_is_found_at_its_file_offset_and_a_missing_one_is_not() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let obj = object::File::parse(&*bytes).unwrap();
        let at = symbol_offset(&obj, "main").expect("a test binary defines main");
        assert!((at as usize) < bytes.len());
        assert_eq!(symbol_offset(&obj, "no_such_symbol_in_this_binary"), None);
    }

    #[test]
    fn a_fifo_at_the_path_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("vigil-uprobe-fifo-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_binary(fifo.to_str().unwrap()).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
