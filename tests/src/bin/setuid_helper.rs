//! A stand-in for a setuid-root program (`su`, `sudo`, `passwd`): the privilege scenario
//! installs a copy setuid root and runs it as nobody, and like them it makes itself root with
//! setuid(0). Exits 0 when it became root.

fn main() {
    // SAFETY: plain system calls without memory arguments.
    let root = unsafe { libc::setuid(0) == 0 && libc::getuid() == 0 };
    std::process::exit(if root { 0 } else { 1 });
}
