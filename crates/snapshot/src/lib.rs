//! What a step changed, as a list of changes under the root:
//!
//! - `upper_changes`: from an overlay upper directory, O(changed files): a
//!   character device 0/0 is a deletion (whiteout), a directory marked
//!   opaque hides what lower layers had in it.
//! - `index` + `tree_diff`: the fallback without overlay: the tree's
//!   metadata before the step, compared with the tree after it.

use kiln_layer::file::{kind_of, read_xattrs};
use kiln_layer::FileKind;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// A file's content is where the file is on disk.
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// (device, inode) of files with more than one link.
    pub link_key: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `path` and everything below it are gone.
    Deleted(String),
    /// Directory `path` hides everything lower layers had in it.
    Opaque(String),
    /// `path` was added or changed.
    Upsert(String, Meta),
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Deleted(p) | Change::Opaque(p) | Change::Upsert(p, _) => p,
        }
    }
}

/// Paths (absolute, clean) a snapshot never reports: the kernel's file
/// systems and what the sandbox injects.
pub fn is_ignored(path: &str, ignore: &[String]) -> bool {
    ["/proc", "/sys", "/dev"]
        .iter()
        .any(|p| path.starts_with(&format!("{p}/")))
        || ignore
            .iter()
            .any(|p| path == p || path.starts_with(&format!("{p}/")))
}

/// Metadata of one entry on disk; overlay's own xattrs (and SELinux
/// labels, ACLs) are left out. Sockets, which images do not carry: `None`.
pub fn meta_of(path: &Path, md: &std::fs::Metadata) -> Option<Meta> {
    let kind = kind_of(path, md)?;
    let keep = |n: &str| {
        !(n.contains(".overlay.") || n.starts_with("security.selinux") || n.starts_with("system."))
    };
    let mut xattrs = read_xattrs(path, md, keep);
    if let Some(v) = xattrs.remove("security.capability") {
        xattrs.insert("security.capability".into(), capability_v2(v));
    }
    Some(Meta {
        link_key: (md.file_type().is_file() && md.nlink() > 1).then(|| (md.dev(), md.ino())),
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid() as u64,
        gid: md.gid() as u64,
        mtime: md.mtime(),
        xattrs,
    })
}

/// File capabilities as images carry them: a namespaced (v3) capability,
/// which names the namespace's root ID, is written back as v2.
pub fn capability_v2(v: Vec<u8>) -> Vec<u8> {
    const REVISION_MASK: u32 = 0xff00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    if v.len() != 24 {
        return v;
    }
    let magic = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
    if magic & REVISION_MASK != REVISION_3 {
        return v;
    }
    let mut out = v[..20].to_vec();
    out[..4].copy_from_slice(&((magic & !REVISION_MASK) | REVISION_2).to_le_bytes());
    out
}

fn is_opaque(path: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|k| matches!(xattr::get(path, k), Ok(Some(v)) if v == b"y"))
}

fn abs(rel: &Path) -> String {
    format!("/{}", rel.to_string_lossy())
}

/// The changes an overlay upper directory holds.
pub fn upper_changes(upper: &Path, ignore: &[String]) -> std::io::Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut it = walkdir::WalkDir::new(upper)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(std::io::Error::other)?;
        let rel = e.path().strip_prefix(upper).unwrap_or(e.path());
        let path = abs(rel);
        if is_ignored(&path, ignore) {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let md = e.path().symlink_metadata()?;
        if md.file_type().is_char_device() && md.rdev() == 0 {
            out.push(Change::Deleted(path));
            continue;
        }
        if md.is_dir() && is_opaque(e.path()) {
            out.push(Change::Opaque(path.clone()));
        }
        if let Some(meta) = meta_of(e.path(), &md) {
            out.push(Change::Upsert(path, meta));
        }
    }
    Ok(out)
}

/// What the fallback diff compares: enough metadata that an unchanged
/// entry is recognised without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub link: Option<PathBuf>,
}

pub type Index = HashMap<String, Stamp>;

fn stamp(path: &Path, md: &std::fs::Metadata) -> Stamp {
    Stamp {
        size: md.len(),
        mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
        ino: md.ino(),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        link: md
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(path).unwrap_or_default()),
    }
}

/// Walk `root` split by its top-level entries over a few threads; `visit`
/// gets each entry (with its absolute image path) and may skip a directory
/// by returning false.
fn parallel_walk<T: Send>(
    root: &Path,
    ignore: &[String],
    visit: &(dyn Fn(&str, &walkdir::DirEntry) -> std::io::Result<Option<T>> + Sync),
) -> std::io::Result<Vec<T>> {
    let mut tops: Vec<PathBuf> = std::fs::read_dir(root)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    tops.sort();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    let error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(tops.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(top) = tops.get(i) else { break };
                let mut local = Vec::new();
                // A top-level symlink is an entry, not a way out: walkdir follows a
                // root that is a link unless told not to.
                let mut it = walkdir::WalkDir::new(top)
                    .follow_links(false)
                    .follow_root_links(false)
                    .into_iter();
                while let Some(e) = it.next() {
                    let e = match e {
                        Ok(e) => e,
                        Err(err) => {
                            *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(std::io::Error::other(err));
                            return;
                        }
                    };
                    let path = abs(e.path().strip_prefix(root).unwrap_or(e.path()));
                    if is_ignored(&path, ignore) {
                        if e.file_type().is_dir() {
                            it.skip_current_dir();
                        }
                        continue;
                    }
                    match visit(&path, &e) {
                        Ok(Some(v)) => local.push(v),
                        Ok(None) => {}
                        Err(err) => {
                            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                            return;
                        }
                    }
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// The metadata of every entry under `root` (the fallback's "before").
pub fn index(root: &Path, ignore: &[String]) -> std::io::Result<Index> {
    let found = parallel_walk(root, ignore, &|path, e| {
        let md = e.path().symlink_metadata()?;
        Ok(Some((path.to_string(), stamp(e.path(), &md))))
    })?;
    Ok(found.into_iter().collect())
}

/// Changes of the tree under `root` since `before` was taken: a parallel
/// metadata comparison; content is only compared later, where metadata
/// cannot decide (see the build's copy-up check).
pub fn tree_diff(root: &Path, before: &Index, ignore: &[String]) -> std::io::Result<Vec<Change>> {
    let found = parallel_walk(root, ignore, &|path, e| {
        let md = e.path().symlink_metadata()?;
        let now = stamp(e.path(), &md);
        let changed = before.get(path) != Some(&now);
        Ok(Some((
            path.to_string(),
            changed.then(|| meta_of(e.path(), &md)).flatten(),
        )))
    })?;
    let seen: std::collections::HashSet<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    // Parents before children.
    let mut upserts: Vec<(String, Meta)> = found
        .iter()
        .filter_map(|(p, m)| m.clone().map(|m| (p.clone(), m)))
        .collect();
    upserts.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
    let mut out: Vec<Change> = upserts
        .into_iter()
        .map(|(p, m)| Change::Upsert(p, m))
        .collect();
    // Deleted: only the topmost missing path of a removed subtree.
    let mut gone: Vec<&String> = before
        .keys()
        .filter(|p| !seen.contains(p.as_str()))
        .collect();
    gone.sort();
    let mut last: Option<&str> = None;
    for p in gone {
        if let Some(l) = last {
            if p.starts_with(&format!("{l}/")) {
                continue;
            }
        }
        out.push(Change::Deleted(p.clone()));
        last = Some(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_capabilities_become_v2() {
        // cap_net_raw+ep, effective flag, rootid 100000.
        let mut v3 = vec![
            0x01, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        v3.extend_from_slice(&100_000u32.to_le_bytes());
        let v2 = capability_v2(v3);
        assert_eq!(v2.len(), 20);
        assert_eq!(&v2[..4], &[0x01, 0x00, 0x00, 0x02]);
        assert_eq!(&v2[4..8], &[0x00, 0x20, 0x00, 0x00]);
        let already = v2.clone();
        assert_eq!(capability_v2(already.clone()), already);
    }

    #[test]
    fn fallback_diff_sees_adds_changes_and_deletes() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("keep/sub")).unwrap();
        std::fs::write(r.join("keep/a"), "1").unwrap();
        std::fs::write(r.join("keep/sub/b"), "2").unwrap();
        std::fs::create_dir_all(r.join("gone/deep")).unwrap();
        std::fs::write(r.join("gone/deep/x"), "x").unwrap();
        std::fs::create_dir_all(r.join("proc")).unwrap();
        let before = index(r, &[]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(r.join("keep/a"), "changed").unwrap();
        std::fs::write(r.join("new"), "n").unwrap();
        std::fs::write(r.join("proc/ignored"), "p").unwrap();
        std::fs::remove_dir_all(r.join("gone")).unwrap();
        let changes = tree_diff(r, &before, &[]).unwrap();
        let paths: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Deleted(p) => format!("-{p}"),
                Change::Opaque(p) => format!("o{p}"),
                Change::Upsert(p, _) => format!("+{p}"),
            })
            .collect();
        assert!(paths.contains(&"+/keep/a".to_string()), "{paths:?}");
        assert!(paths.contains(&"+/new".to_string()), "{paths:?}");
        assert!(paths.contains(&"-/gone".to_string()), "{paths:?}");
        assert!(!paths.iter().any(|p| p.contains("gone/deep")), "{paths:?}");
        assert!(!paths.iter().any(|p| p.contains("ignored")), "{paths:?}");
        assert!(!paths.contains(&"+/keep/sub/b".to_string()), "{paths:?}");
    }
}
