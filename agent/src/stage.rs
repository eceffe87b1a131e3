//! Pinning the files of a complete SSTable before upload, so that a compaction that deletes them
//! mid-upload cannot break it: hard links into a staging directory on the same filesystem (what
//! `nodetool snapshot` does). Where hard links are impossible (a read-only mount, another
//! filesystem) the files are pinned by open descriptors instead and read through /proc/self/fd.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The files of one unit, pinned; unpinned (staging removed) when dropped.
#[derive(Debug)]
pub struct Staged {
    dir: Option<PathBuf>,
    /// (name in the source directory, path to read it from).
    pub files: Vec<(String, PathBuf)>,
    _fds: Vec<std::fs::File>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The outcome of pinning.
#[derive(Debug)]
pub enum Pin {
    /// Every file is pinned.
    Pinned(Staged),
    /// A file vanished before it could be pinned (compaction): nothing to ship.
    Vanished(String),
}

/// Pins `names` of `src` (relative paths) under `staging`.
pub fn pin(staging: &Path, src: &Path, names: &[String]) -> std::io::Result<Pin> {
    std::fs::create_dir_all(staging)?;
    let unit = staging.join(format!(
        "{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&unit)?;
    let mut staged = Staged {
        dir: Some(unit.clone()),
        files: Vec::new(),
        _fds: Vec::new(),
    };
    for (i, name) in names.iter().enumerate() {
        let from = src.join(name);
        let to = unit.join(format!("{i}"));
        match std::fs::hard_link(&from, &to) {
            Ok(()) => staged.files.push((name.clone(), to)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Pin::Vanished(name.clone()));
            }
            Err(e) if cannot_link(&e) => return pin_by_fd(src, names),
            Err(e) => return Err(e),
        }
    }
    Ok(Pin::Pinned(staged))
}

fn cannot_link(e: &std::io::Error) -> bool {
    // EXDEV (another filesystem), EROFS (read-only), EPERM (protected_hardlinks), EMLINK.
    matches!(e.raw_os_error(), Some(18 | 30 | 1 | 31))
}

/// Pins by open descriptors; reads go through /proc/self/fd/N, which reaches the same inode
/// even after the name is unlinked.
pub fn pin_by_fd(src: &Path, names: &[String]) -> std::io::Result<Pin> {
    let mut staged = Staged {
        dir: None,
        files: Vec::new(),
        _fds: Vec::new(),
    };
    for name in names {
        match std::fs::File::open(src.join(name)) {
            Ok(f) => {
                staged.files.push((
                    name.clone(),
                    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())),
                ));
                staged._fds.push(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Pin::Vanished(name.clone()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Pin::Pinned(staged))
}

/// Removes what a previous run left in the staging directory.
pub fn clean(staging: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    match std::fs::read_dir(staging) {
        Ok(rd) => {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?
                } else {
                    std::fs::remove_file(&p)?
                }
                n += 1;
            }
            Ok(n)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_files_survive_deletion_and_staging_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("t");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), b"aaa").unwrap();
        std::fs::write(src.join("b"), b"bb").unwrap();
        let staging = d.path().join(".staging");
        let Pin::Pinned(s) = pin(&staging, &src, &["a".into(), "b".into()]).unwrap() else {
            panic!()
        };
        std::fs::remove_file(src.join("a")).unwrap();
        assert_eq!(std::fs::read(&s.files[0].1).unwrap(), b"aaa");
        drop(s);
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);

        let Pin::Pinned(s) = pin_by_fd(&src, &["b".into()]).unwrap() else {
            panic!()
        };
        std::fs::remove_file(src.join("b")).unwrap();
        assert_eq!(
            std::fs::read(&s.files[0].1).unwrap(),
            b"bb",
            "read through /proc/self/fd after unlink"
        );

        assert!(
            matches!(pin(&staging, &src, &["gone".into()]).unwrap(), Pin::Vanished(n) if n == "gone")
        );
        std::fs::create_dir_all(staging.join("left-over")).unwrap();
        assert_eq!(clean(&staging).unwrap(), 1);
    }

    /// Issue 13 (mutation testing): a link refused for the filesystem's sake (EXDEV, EROFS, EPERM,
    /// EMLINK) falls back to descriptors; anything else is an error.
    #[test]
    fn only_the_link_refusals_fall_back_to_descriptors() {
        for code in [18, 30, 1, 31] {
            assert!(
                cannot_link(&std::io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        for code in [2, 13, 28] {
            assert!(
                !cannot_link(&std::io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        assert!(!cannot_link(&std::io::Error::other("not an OS error")));
    }

    /// Issue 13 (mutation testing): staging on another filesystem (tmpfs here, the tree on disk)
    /// pins by descriptor; a file missing by then is reported by name, by either way of pinning;
    /// and `clean` counts every file and directory it removes, and a missing staging directory is
    /// nothing to clean.
    #[test]
    fn another_filesystem_pins_by_descriptor_and_clean_counts_what_it_removes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("t");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), b"aaa").unwrap();
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap());
        assert_ne!(dev(shm.path()), dev(&src), "/dev/shm is another filesystem");
        let Pin::Pinned(s) = pin(&shm.path().join("staging"), &src, &["a".into()]).unwrap() else {
            panic!("pinned")
        };
        assert!(s.files[0].1.starts_with("/proc/self/fd/"), "{:?}", s.files);
        assert_eq!(std::fs::read(&s.files[0].1).unwrap(), b"aaa");
        assert!(matches!(
            pin_by_fd(&src, &["a".into(), "gone".into()]).unwrap(),
            Pin::Vanished(n) if n == "gone"
        ));
        assert!(
            pin(&src.join("a"), &src, &["a".into()]).is_err(),
            "staging under a file"
        );
        assert!(
            pin_by_fd(&src, &["a/x".into()]).is_err(),
            "ENOTDIR is an error, not a file vanished"
        );

        let staging = d.path().join(".staging");
        assert_eq!(clean(&staging).unwrap(), 0, "no staging directory yet");
        std::fs::create_dir_all(staging.join("x/y")).unwrap();
        std::fs::create_dir_all(staging.join("z")).unwrap();
        std::fs::write(staging.join("f"), b"f").unwrap();
        assert_eq!(clean(&staging).unwrap(), 3);
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
        assert!(
            clean(&src.join("a")).is_err(),
            "a file is no staging directory"
        );
    }

    /// Issue 13 (mutation testing): a link the staging filesystem refuses for want of space fails
    /// the unit rather than falling back to descriptors, which would hide a full staging
    /// filesystem. A tmpfs out of inodes refuses a hard link with ENOSPC (a link takes one), the
    /// open that the fallback does still works there. Mounting it needs root (CAP_SYS_ADMIN), as
    /// the sidecar's own tests run; without it the test fails, saying so.
    #[test]
    fn a_link_refused_for_want_of_space_fails_the_unit() {
        let d = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=1m,nr_inodes=32",
                "tablesnap-test",
            ])
            .arg(d.path())
            .output()
            .expect("run mount");
        assert!(
            mounted.status.success(),
            "mounting a tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&mounted.stderr).trim()
        );
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _unmount = Unmount(d.path());
        let src = d.path().join("t");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), b"aaa").unwrap();
        let staging = d.path().join(".staging");
        std::fs::create_dir(&staging).unwrap();
        // Every inode taken, then one given back: for the unit's directory, none for the link.
        let mut filler = 0;
        while std::fs::write(d.path().join(format!("f{filler}")), b"").is_ok() {
            filler += 1;
        }
        assert!(filler > 0, "the tmpfs had free inodes");
        std::fs::remove_file(d.path().join(format!("f{}", filler - 1))).unwrap();

        let Err(e) = pin(&staging, &src, &["a".into()]) else {
            panic!("a link refused with ENOSPC was pinned anyway")
        };
        assert_eq!(e.raw_os_error(), Some(28), "{e}");
        assert_eq!(
            std::fs::read_dir(&staging).unwrap().count(),
            0,
            "the unit's directory is gone"
        );
        assert!(
            matches!(pin_by_fd(&src, &["a".into()]).unwrap(), Pin::Pinned(_)),
            "the descriptor fallback would have worked: only the decision refuses it"
        );
    }
}
