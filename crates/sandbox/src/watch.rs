//! O(changed files) snapshots without mounts: inotify (unprivileged, so it
//! works in a locked-down pod) watches every directory of the root, set up
//! once and kept current; a step's changes are read from the paths it
//! touched. Where inotify is unavailable, its watch limit is reached or
//! its queue overflows, the caller falls back to walking the root.

use kiln_snapshot::{is_ignored, meta_of, Change, Meta};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE
    | libc::IN_DONT_FOLLOW
    | libc::IN_ONLYDIR;

pub struct Watcher {
    fd: OwnedFd,
    by_wd: HashMap<i32, PathBuf>,
    watched: HashSet<PathBuf>,
    root: PathBuf,
    skip: Vec<String>,
}

/// Paths touched since the last read, and the directories removed or
/// moved away (what stands there now is new as a whole).
#[derive(Default)]
struct Touched {
    paths: BTreeSet<PathBuf>,
    removed: BTreeSet<PathBuf>,
}

impl Watcher {
    /// Watch every directory under `root` but the skipped ones.
    pub fn start(root: &Path, skip: &[String]) -> Option<Watcher> {
        // SAFETY: plain system call; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut w = Watcher {
            fd,
            by_wd: HashMap::new(),
            watched: HashSet::new(),
            root: root.to_path_buf(),
            skip: skip.to_vec(),
        };
        w.watch_tree(root).then_some(w)
    }

    fn abs(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        format!("/{}", rel.to_string_lossy())
    }

    fn skipped(&self, path: &Path) -> bool {
        let abs = self.abs(path);
        abs != "/"
            && (is_ignored(&abs, &self.skip) || ["/proc", "/sys", "/dev"].contains(&abs.as_str()))
    }

    /// Watch `dir` and every directory below it; false at the watch limit.
    fn watch_tree(&mut self, dir: &Path) -> bool {
        let mut it = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .follow_root_links(false)
            .into_iter();
        while let Some(entry) = it.next() {
            let Ok(e) = entry else { continue };
            if !e.file_type().is_dir() {
                continue;
            }
            if self.skipped(e.path()) {
                it.skip_current_dir();
                continue;
            }
            if self.watched.contains(e.path()) {
                continue;
            }
            let Ok(c) = std::ffi::CString::new(e.path().as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: a valid descriptor and NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
            if wd < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSPC) {
                    tracing::debug!("inotify: the watch limit is reached");
                    return false;
                }
                continue;
            }
            if let Some(old) = self.by_wd.insert(wd, e.path().to_path_buf()) {
                self.watched.remove(&old);
            }
            self.watched.insert(e.path().to_path_buf());
        }
        true
    }

    /// Stop watching `dir` and what is below it (moved away or removed).
    fn unwatch_tree(&mut self, dir: &Path) {
        let gone: Vec<i32> = self
            .by_wd
            .iter()
            .filter(|(_, p)| p.starts_with(dir))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            // SAFETY: a watch descriptor of our own inotify instance.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            if let Some(p) = self.by_wd.remove(&wd) {
                self.watched.remove(&p);
            }
        }
    }

    /// The events queued since the last read; `None` when some were lost.
    fn drain(&mut self) -> Option<Touched> {
        let mut touched = Touched::default();
        let mut buf = vec![0u8; 256 * 1024];
        let header = std::mem::size_of::<libc::inotify_event>();
        loop {
            // SAFETY: reading into our own buffer of that length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let n = n as usize;
            let mut off = 0usize;
            while off + header <= n {
                // SAFETY: the kernel writes whole events; read unaligned.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name_end = (off + header + ev.len as usize).min(n);
                let raw = &buf[off + header..name_end];
                let name = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
                off = name_end;
                if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                    return None;
                }
                if ev.mask & libc::IN_IGNORED != 0 {
                    if let Some(p) = self.by_wd.remove(&ev.wd) {
                        self.watched.remove(&p);
                    }
                    continue;
                }
                let Some(dir) = self.by_wd.get(&ev.wd) else {
                    continue;
                };
                let path = if name.is_empty() {
                    dir.clone()
                } else {
                    dir.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name))
                };
                let dir_gone = libc::IN_DELETE | libc::IN_MOVED_FROM;
                if ev.mask & libc::IN_ISDIR != 0 && ev.mask & dir_gone != 0 {
                    touched.removed.insert(path.clone());
                }
                touched.paths.insert(path);
            }
        }
        Some(touched)
    }

    /// Take in what kiln itself wrote since the last step (new directories
    /// watched, removed ones dropped); false when events were lost.
    pub fn resync(&mut self) -> bool {
        let Some(touched) = self.drain() else {
            return false;
        };
        for dir in &touched.removed {
            self.unwatch_tree(dir);
        }
        for path in &touched.paths {
            if path.is_dir() && !self.watched.contains(path) && !self.watch_tree(path) {
                return false;
            }
        }
        true
    }

    /// The step's changes; `None`: events were lost (walk the root instead).
    pub fn changes(&mut self) -> Option<Vec<Change>> {
        let touched = self.drain()?;
        for dir in &touched.removed {
            self.unwatch_tree(dir);
        }
        let mut deleted = Vec::new();
        let mut upserts: Vec<(String, Meta)> = Vec::new();
        for path in &touched.paths {
            if self.skipped(path) {
                continue;
            }
            let abs = self.abs(path);
            let Ok(md) = std::fs::symlink_metadata(path) else {
                deleted.push(abs);
                continue;
            };
            let fresh = touched.removed.contains(path) || !self.watched.contains(path);
            if md.is_dir() && fresh {
                // A new (or replaced) directory: all of it is new, including
                // what was made in it before it could be watched.
                if touched.removed.contains(path) {
                    deleted.push(abs.clone());
                }
                if !self.watch_tree(path) {
                    return None;
                }
                let mut it = walkdir::WalkDir::new(path)
                    .follow_links(false)
                    .follow_root_links(false)
                    .into_iter();
                while let Some(entry) = it.next() {
                    let Ok(e) = entry else { continue };
                    if self.skipped(e.path()) {
                        if e.file_type().is_dir() {
                            it.skip_current_dir();
                        }
                        continue;
                    }
                    if let Ok(m) = e.path().symlink_metadata() {
                        if let Some(meta) = meta_of(e.path(), &m) {
                            upserts.push((self.abs(e.path()), meta));
                        }
                    }
                }
                continue;
            }
            if let Some(meta) = meta_of(path, &md) {
                upserts.push((abs, meta));
            }
        }
        deleted.sort();
        deleted.dedup();
        upserts.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        upserts.dedup_by(|a, b| a.0 == b.0);
        let mut out: Vec<Change> = deleted.into_iter().map(Change::Deleted).collect();
        out.extend(upserts.into_iter().map(|(p, m)| Change::Upsert(p, m)));
        Some(out)
    }
}

/// Without events to go by (they were lost mid-step): every entry under
/// `root` as an upsert (the caller drops those that did not change) and
/// every path of `known` no longer there as deleted.
pub fn all_changes(root: &Path, known: &[String], skip: &[String]) -> std::io::Result<Vec<Change>> {
    let abs = |p: &Path| format!("/{}", p.strip_prefix(root).unwrap_or(p).to_string_lossy());
    let skipped =
        |a: &str| a != "/" && (is_ignored(a, skip) || ["/proc", "/sys", "/dev"].contains(&a));
    let mut upserts = Vec::new();
    let mut seen = HashSet::new();
    let mut it = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .into_iter();
    while let Some(entry) = it.next() {
        let e = entry.map_err(std::io::Error::other)?;
        let a = abs(e.path());
        if skipped(&a) {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        seen.insert(a.clone());
        if let Some(meta) = meta_of(e.path(), &e.path().symlink_metadata()?) {
            upserts.push(Change::Upsert(a, meta));
        }
    }
    let mut gone: Vec<&String> = known
        .iter()
        .filter(|p| p.as_str() != "/" && !seen.contains(*p) && !skipped(p))
        .collect();
    gone.sort();
    let mut out = Vec::new();
    let mut last: Option<&str> = None;
    for p in gone {
        if last.is_some_and(|l| p.starts_with(&format!("{l}/"))) {
            continue;
        }
        out.push(Change::Deleted(p.clone()));
        last = Some(p);
    }
    out.extend(upserts);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Deleted(p) => format!("-{p}"),
                Change::Opaque(p) => format!("o{p}"),
                Change::Upsert(p, _) => format!("+{p}"),
            })
            .collect()
    }

    #[test]
    fn a_steps_changes_from_its_events() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["keep/sub", "gone/deep", "moved", "kiln"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for f in ["keep/a", "keep/sub/b", "gone/deep/x", "moved/m", "kiln/k"] {
            std::fs::write(r.join(f), f).unwrap();
        }
        let root = r.to_string_lossy().into_owned();
        let mut w = Watcher::start(r, &["/kiln".to_string()]).expect("inotify");
        // What kiln writes between steps is taken in, not reported.
        std::fs::create_dir(r.join("by-kiln")).unwrap();
        assert!(w.resync());
        // The step.
        std::fs::write(r.join("keep/a"), "changed").unwrap();
        std::fs::create_dir_all(r.join("new/inner")).unwrap();
        std::fs::write(r.join("new/inner/f"), "f").unwrap();
        std::fs::remove_dir_all(r.join("gone")).unwrap();
        std::fs::rename(r.join("moved"), r.join("renamed")).unwrap();
        std::fs::write(r.join("by-kiln/late"), "l").unwrap();
        std::fs::write(r.join("kiln/k"), "ignored").unwrap();
        let changes = names(&w.changes().expect("no overflow"));
        for want in [
            "+/keep/a",
            "+/new",
            "+/new/inner",
            "+/new/inner/f",
            "-/gone",
            "-/moved",
            "+/renamed",
            "+/renamed/m",
            "+/by-kiln/late",
        ] {
            assert!(changes.contains(&want.to_string()), "{want} in {changes:?}");
        }
        assert!(
            !changes
                .iter()
                .any(|c| c.contains("kiln/k") || c.contains("keep/sub")),
            "{changes:?}"
        );
        // The next step sees only its own changes, in directories new before.
        std::fs::write(r.join("new/inner/g"), "g").unwrap();
        std::fs::write(r.join("renamed/n"), "n").unwrap();
        let changes = names(&w.changes().unwrap());
        assert_eq!(changes, vec!["+/new/inner/g", "+/renamed/n"], "{root}");
    }
}
