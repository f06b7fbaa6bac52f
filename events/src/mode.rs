//! An inode's mode as `ls -l` writes it (`-rw-r--r--`, `drwxrwxrwt`, `-rwsr-xr-x`): the
//! `permission` of Tetragon's file and path arguments, which its users grep for (`"-rw-------"`
//! on a key file, an `s` on a binary).

/// The file type's letter, then owner, group and other permissions, with the set-user-id,
/// set-group-id and sticky bits in the execute columns (`s`/`S`, `s`/`S`, `t`/`T`: upper case
/// when the execute bit under them is clear). Empty for mode 0 (no inode was read).
pub fn permission(mode: u16) -> String {
    if mode == 0 {
        return String::new();
    }
    let kind = match mode & 0o170000 {
        0o140000 => "s",
        0o120000 => "l",
        0o100000 => "-",
        0o060000 => "b",
        0o040000 => "d",
        0o020000 => "c",
        0o010000 => "p",
        _ => "?",
    };
    let mut out = String::with_capacity(10);
    out.push_str(kind);
    // (shift of the rwx triplet, the special bit over its x, its letter)
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::permission;

    #[test]
    fn modes_read_as_ls_writes_them() {
        for (mode, text) in [
            (0o100644, "-rw-r--r--"),
            (0o100600, "-rw-------"),
            (0o104755, "-rwsr-xr-x"),
            (0o102755, "-rwxr-sr-x"),
            (0o104644, "-rwSr--r--"),
            (0o041777, "drwxrwxrwt"),
            (0o041776, "drwxrwxrwT"),
            (0o120777, "lrwxrwxrwx"),
            (0o020620, "crw--w----"),
            (0o060660, "brw-rw----"),
            (0o010600, "prw-------"),
            (0o140755, "srwxr-xr-x"),
        ] {
            assert_eq!(permission(mode), text, "{mode:o}");
        }
    }

    #[test]
    fn no_inode_is_no_permission() {
        assert_eq!(permission(0), "");
    }
}
