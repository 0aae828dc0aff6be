//! Which filesystem a path lives on, read from `/proc/self/mountinfo`
//! (pure parsing; the caller reads the file). The agent writes secret
//! files only to a memory-backed filesystem (tmpfs or ramfs), so that a
//! secret never reaches a disk; this is how it checks `--secrets-dir`
//! without `statfs` (the crate forbids `unsafe`).
//!
//! A mountinfo line (proc(5)):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)  (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```
//!
//! (5) is the mount point, with space, tab, newline and backslash written
//! as octal escapes (`\040`); (7) is zero or more optional fields ended by
//! `-`; (9) is the filesystem type.

use std::path::{Path, PathBuf};

/// One mount: where, and what kind of filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Every mount in `mountinfo`, in order (later mounts on the same point
/// hide earlier ones). Lines that do not parse are skipped.
pub fn parse(mountinfo: &str) -> Vec<Mount> {
    mountinfo.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    // Skip the mount options, then the optional fields up to "-".
    fields.next()?;
    fields.by_ref().find(|f| *f == "-")?;
    let fs_type = fields.next().filter(|t| !t.is_empty())?;
    Some(Mount {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: unescape(fs_type),
    })
}

/// Undoes the kernel's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i..i + 4)
            .filter(|e| e[0] == b'\\' && e[1..].iter().all(|d| (b'0'..=b'7').contains(d)));
        match escape {
            Some(e) => {
                let value = e[1..].iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount `path` (absolute, without `..` or symlinks) is on: the one
/// with the longest mount point above it; of several on the same point,
/// the last.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Whether a filesystem type keeps its files in memory only.
pub fn is_memory_backed(fs_type: &str) -> bool {
    matches!(fs_type, "tmpfs" | "ramfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
25 22 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
26 22 0:24 / /run rw,nosuid,nodev shared:5 master:1 - tmpfs tmpfs rw,mode=755
27 26 0:25 / /run/argosy-agent rw,relatime shared:6 - ext4 /dev/vdb rw
28 22 0:26 / /srv/my\\040secrets rw - ramfs ramfs rw
29 22 0:27 / /var/lib rw - xfs /dev/vdc rw
30 29 0:28 / /var/lib rw - tmpfs tmpfs rw
not a mount line
31 22 0:29 / /broken rw shared:7
";

    fn fs(path: &str) -> Option<String> {
        mount_of(&parse(SAMPLE), Path::new(path)).map(|m| m.fs_type.clone())
    }

    #[test]
    fn parses_mount_points_and_types() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 8, "{mounts:?}");
        assert_eq!(
            mounts[4],
            Mount {
                mount_point: PathBuf::from("/run/argosy-agent"),
                fs_type: "ext4".into()
            }
        );
        // Octal escapes in mount points.
        assert_eq!(mounts[5].mount_point, PathBuf::from("/srv/my secrets"));
        assert_eq!(unescape(r"a\011b\012c\134d"), "a\tb\nc\\d");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape(r"\999"), r"\999");
    }

    #[test]
    fn the_deepest_and_latest_mount_wins() {
        assert_eq!(fs("/run/argosy-agent/secrets").as_deref(), Some("ext4"));
        assert_eq!(fs("/run/other/secrets").as_deref(), Some("tmpfs"));
        assert_eq!(fs("/run").as_deref(), Some("tmpfs"));
        // Whole components only: /run-data is not under /run.
        assert_eq!(fs("/run-data/x").as_deref(), Some("ext4"));
        assert_eq!(fs("/dev/shm/argosy").as_deref(), Some("tmpfs"));
        assert_eq!(fs("/srv/my secrets/a").as_deref(), Some("ramfs"));
        // Mounted over: the later mount hides the earlier one.
        assert_eq!(fs("/var/lib/argosy").as_deref(), Some("tmpfs"));
        assert_eq!(fs("/home").as_deref(), Some("ext4"));
        assert_eq!(mount_of(&[], Path::new("/x")), None);
    }

    #[test]
    fn memory_backed_filesystems() {
        assert!(is_memory_backed("tmpfs"));
        assert!(is_memory_backed("ramfs"));
        for disk in ["ext4", "xfs", "overlay", "nfs", "fuse.sshfs", ""] {
            assert!(!is_memory_backed(disk), "{disk}");
        }
    }

    /// Pure: the caller reads the files and holds the clock.
    #[test]
    fn this_module_does_no_io() {
        let source = include_str!("mountinfo.rs");
        let code: String = source[..source.find("#[cfg(test)]").unwrap()]
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect();
        for banned in [
            concat!("tok", "io"),
            concat!("std::", "fs"),
            concat!("std::", "net"),
            concat!("SystemTime", "::now"),
            concat!("Instant", "::now"),
            concat!("crate::", "docker"),
        ] {
            assert!(!code.contains(banned), "mountinfo.rs uses {banned}");
        }
    }
}
