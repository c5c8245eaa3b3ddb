//! Parsing of OCI mount options into mount(2) flags, propagation changes,
//! recursive attributes (mount_setattr) and the filesystem data string.

use nix::mount::MsFlags;

/// MOUNT_ATTR_* bits for the recursive options (`rro`, `rnosuid`, ...).
pub(crate) mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const ATIME_MASK: u64 = 0x70;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// MS_NOSYMFOLLOW (Linux 5.10), absent from nix's `MsFlags`.
pub(crate) const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

/// What a mount's `options` ask for.
#[derive(Debug)]
pub(crate) struct MountOptions {
    /// Flags for the mount call (and the remount of a bind mount).
    pub flags: MsFlags,
    /// Flags explicitly turned off (`rw`, `suid`, `dev`, `exec`, `atime`...),
    /// so a read-only bind remount does not re-add them from the source.
    pub cleared: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes to set / clear with mount_setattr(AT_RECURSIVE).
    pub attr_set: u64,
    /// See `attr_set`.
    pub attr_clr: u64,
    /// Unknown options, comma-joined: the filesystem's own data
    /// (`mode=755`, `size=65536k`, `newinstance`...).
    pub data: String,
    /// `tmpcopyup`: copy the directory's content into a new tmpfs.
    pub tmpcopyup: bool,
    /// `idmap` (Some(false)) or `ridmap` (Some(true)): an idmapped bind.
    pub idmap: Option<bool>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            attr_set: 0,
            attr_clr: 0,
            data: String::new(),
            tmpcopyup: false,
            idmap: None,
        }
    }
}

impl MountOptions {
    /// True for `bind` / `rbind`.
    pub(crate) fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// Options that change a flag: (name, clear?, flag).
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("acl", false, MsFlags::MS_POSIXACL),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noacl", true, MsFlags::MS_POSIXACL),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("nosymfollow", false, MS_NOSYMFOLLOW),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("symfollow", true, MS_NOSYMFOLLOW),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// Recursive attributes: (name, clear?, attribute).
const RECURSIVE: &[(&str, bool, u64)] = &[
    ("rro", false, attr::RDONLY),
    ("rrw", true, attr::RDONLY),
    ("rnosuid", false, attr::NOSUID),
    ("rsuid", true, attr::NOSUID),
    ("rnodev", false, attr::NODEV),
    ("rdev", true, attr::NODEV),
    ("rnoexec", false, attr::NOEXEC),
    ("rexec", true, attr::NOEXEC),
    ("rnodiratime", false, attr::NODIRATIME),
    ("rdiratime", true, attr::NODIRATIME),
    ("rnosymfollow", false, attr::NOSYMFOLLOW),
    ("rsymfollow", true, attr::NOSYMFOLLOW),
];

/// Recursive atime options replace the whole atime field (the kernel
/// keeps one atime mode, not bits). The negative forms mean what mount(8)
/// gives them: `ratime` and `rnostrictatime` are the kernel default
/// (relatime), `rnorelatime` updates atime on every access (strictatime).
const RECURSIVE_ATIME: &[(&str, u64)] = &[
    ("rrelatime", attr::RELATIME),
    ("rnorelatime", attr::STRICTATIME),
    ("rnoatime", attr::NOATIME),
    ("ratime", attr::RELATIME),
    ("rstrictatime", attr::STRICTATIME),
    ("rnostrictatime", attr::RELATIME),
];

/// Options that are neither flags nor attributes.
#[derive(Clone, Copy)]
enum Other {
    /// An idmapped bind, recursive or not.
    Idmap { recursive: bool },
    /// Copy the directory's content into the new tmpfs, or not.
    TmpCopyUp(bool),
}

const OTHER: &[(&str, Other)] = &[
    ("idmap", Other::Idmap { recursive: false }),
    ("ridmap", Other::Idmap { recursive: true }),
    ("tmpcopyup", Other::TmpCopyUp(true)),
    ("notmpcopyup", Other::TmpCopyUp(false)),
];

/// Every option [`parse`] recognizes (the rest are filesystem data), sorted.
pub(crate) fn names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = FLAGS
        .iter()
        .map(|(n, _, _)| *n)
        .chain(PROPAGATION.iter().map(|(n, _)| *n))
        .chain(RECURSIVE.iter().map(|(n, _, _)| *n))
        .chain(RECURSIVE_ATIME.iter().map(|(n, _)| *n))
        .chain(OTHER.iter().map(|(n, _)| *n))
        .collect();
    v.sort_unstable();
    v
}

/// Propagation flags named by `rootfsPropagation` (or a mount option).
pub(crate) fn propagation_flag(name: &str) -> Option<MsFlags> {
    PROPAGATION
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// Parse a mount's option list. Unknown options become filesystem data.
pub(crate) fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let opt = opt.as_ref();
        if let Some(&(_, clear, flag)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
            if clear {
                o.flags.remove(flag);
                o.cleared.insert(flag);
            } else {
                o.flags.insert(flag);
                o.cleared.remove(flag);
            }
        } else if let Some(flag) = propagation_flag(opt) {
            o.propagation.push(flag);
        } else if let Some(&(_, clear, a)) = RECURSIVE.iter().find(|(n, _, _)| *n == opt) {
            if clear {
                o.attr_clr |= a;
                o.attr_set &= !a;
            } else {
                o.attr_set |= a;
                o.attr_clr &= !a;
            }
        } else if let Some(&(_, a)) = RECURSIVE_ATIME.iter().find(|(n, _)| *n == opt) {
            o.attr_clr |= attr::ATIME_MASK;
            o.attr_set = (o.attr_set & !attr::ATIME_MASK) | a;
        } else if let Some(&(_, other)) = OTHER.iter().find(|(n, _)| *n == opt) {
            match other {
                Other::Idmap { recursive } => o.idmap = Some(recursive),
                Other::TmpCopyUp(on) => o.tmpcopyup = on,
            }
        } else {
            if !o.data.is_empty() {
                o.data.push(',');
            }
            o.data.push_str(opt);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_option_is_recognized() {
        let names = names();
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicate"
        );
        for n in names {
            let o = parse(&[n]);
            assert!(o.data.is_empty(), "{n} is passed on as filesystem data");
        }
        assert_eq!(parse(&["mode=755"]).data, "mode=755");
    }

    #[test]
    fn parses_flags_propagation_and_data() {
        let o = parse(&[
            "nosuid",
            "rbind",
            "ro",
            "rprivate",
            "mode=755",
            "size=65536k",
            "rw",
        ]);
        assert!(o
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.data, "mode=755,size=65536k");
        let r = parse(&["rro", "rnoatime"]);
        assert_eq!(r.attr_set, attr::RDONLY | attr::NOATIME);
        assert_eq!(r.attr_clr, attr::ATIME_MASK);
        let s = parse(&["nosymfollow", "rnosymfollow", "rnorelatime"]);
        assert!(s.flags.contains(MS_NOSYMFOLLOW));
        assert_eq!(s.attr_set, attr::NOSYMFOLLOW | attr::STRICTATIME);
        let c = parse(&["rnosymfollow", "rsymfollow", "ratime", "symfollow"]);
        assert_eq!(c.attr_set, attr::RELATIME);
        assert_eq!(c.attr_clr, attr::NOSYMFOLLOW | attr::ATIME_MASK);
        assert!(c.cleared.contains(MS_NOSYMFOLLOW));
        // Unknown-to-nix bits survive the set operations used on them.
        assert!(s
            .flags
            .difference(MsFlags::MS_REMOUNT)
            .contains(MS_NOSYMFOLLOW));
    }
}
