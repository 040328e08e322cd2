//! Extracting a layer tar into a directory without letting anything leave
//! it: entry paths are cleaned (`..` that would climb out is refused,
//! absolute paths are taken relative to the root), every parent is resolved
//! inside the root (a symlink planted by an earlier entry cannot redirect a
//! later write outside), hard links must point inside, and the final
//! component is never followed. Whiteouts and opaque markers are recorded,
//! not written. Owners, devices and xattrs are applied where the process may
//! and always recorded, so nothing is silently lost.

use crate::archive::open_archive;
use crate::entry::Content;
use crate::file::FileKind;
use crate::hashing::HashingReader;
use crate::in_root::{fd_path, RootDir};
use crate::records::{entry_meta, link_name, whiteout_of, EntryMeta};
use crate::LayerError;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

pub use crate::records::describe_layer_to;

/// What one tar entry did to the directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AppliedKind {
    /// A file of this kind now stands at `path` (a file's content is where
    /// it was extracted; a hard link names an earlier path of this layer or
    /// a lower one).
    Node(FileKind),
    /// `.wh.NAME`: `path` is removed from the lower layers.
    Whiteout,
    /// `.wh..wh..opq`: the lower layers' contents of directory `path` are hidden.
    Opaque,
}

/// One entry of an applied layer, as the tar said (owners and modes even
/// where the file system could not take them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedEntry {
    /// Clean, relative, no trailing slash ("" never appears).
    pub path: String,
    pub kind: AppliedKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// What extracting a layer found.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub entries: Vec<AppliedEntry>,
    /// Hex sha256 of the uncompressed tar (the layer's diff_id).
    pub diff_id: String,
    pub uncompressed_size: u64,
    /// Every whiteout and opaque marker could be written (with
    /// `overlay_markers`): the directory works as an overlay lower layer.
    pub overlay_ready: bool,
}

/// How to extract.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Write whiteouts as overlayfs does (character device 0/0) and mark
    /// opaque directories (`user.overlay.opaque`, and `trusted.` as root),
    /// so the directory can be an overlay lower layer as it is.
    pub overlay_markers: bool,
}

/// Extract the (possibly compressed) layer `input` into `root`.
pub fn extract_layer(
    input: impl Read + Send,
    root: &Path,
    what: &str,
) -> Result<Extracted, LayerError> {
    extract_layer_with(input, root, what, &ExtractOptions::default())
}

/// [`extract_layer`] with options.
pub fn extract_layer_with(
    input: impl Read + Send,
    root: &Path,
    what: &str,
    options: &ExtractOptions,
) -> Result<Extracted, LayerError> {
    let mut entries = Vec::new();
    let mut extracted = extract_layer_to(input, root, what, options, &mut |e| {
        entries.push(e);
        Ok(())
    })?;
    extracted.entries = entries;
    Ok(extracted)
}

/// As [`extract_layer_with`], handing each entry's record to `sink` as it
/// is extracted instead of keeping them (`entries` stays empty): a
/// 200k-file layer is never a list in memory.
pub fn extract_layer_to(
    input: impl Read + Send,
    root: &Path,
    what: &str,
    options: &ExtractOptions,
    sink: &mut dyn FnMut(AppliedEntry) -> std::io::Result<()>,
) -> Result<Extracted, LayerError> {
    let recorded = |e: std::io::Error| LayerError::io(format!("recording {what}"), e);
    let invalid = |path: &str, m: String| LayerError::InvalidEntry {
        path: format!("{what}: {path}"),
        message: m,
    };
    let (_, reader) =
        open_archive(input).map_err(|e| LayerError::io(format!("reading {what}"), e))?;
    let mut archive = tar::Archive::new(HashingReader::new(reader));
    let is_root = rustix_is_root();
    let extract_root = ExtractRoot::open(root)
        .map_err(|e| LayerError::io(format!("opening {}", root.display()), e))?;
    let mut overlay_ready = true;
    let mut dir_times: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut dirs_seen: std::collections::HashMap<String, PathBuf> =
        std::collections::HashMap::new();
    let mut not_created: Vec<String> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| LayerError::io(format!("reading {what}"), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| LayerError::io(format!("reading {what}"), e))?;
        let Some(EntryMeta {
            raw,
            rel,
            parent_rel,
            name,
            header,
            record,
        }) = entry_meta(&mut entry, what)?
        else {
            continue;
        };
        let (mode, uid, gid, mtime) = (record.mode, record.uid, record.gid, record.mtime);
        let xattrs = record.xattrs.clone();
        let record = |kind: AppliedKind, path: String| AppliedEntry {
            path,
            kind,
            ..record.clone()
        };
        // Whiteouts are metadata for whoever stacks the layers.
        if name.starts_with(".wh.") {
            dirs_seen.clear();
        }
        if name == ".wh..wh..opq" {
            if options.overlay_markers {
                let dir = extract_root
                    .make_dir(&parent_rel)
                    .map_err(|m| invalid(&raw, m.to_string()))?;
                let user = xattr::set(&dir, "user.overlay.opaque", b"y").is_ok();
                let trusted = is_root && xattr::set(&dir, "trusted.overlay.opaque", b"y").is_ok();
                overlay_ready &= user || trusted;
            }
            sink(record(AppliedKind::Opaque, parent_rel)).map_err(recorded)?;
            continue;
        }
        if let Some(hidden) = whiteout_of(&name) {
            let hidden = hidden.map_err(|m| invalid(&raw, m.to_string()))?;
            if options.overlay_markers {
                let dir = extract_root
                    .make_dir(&parent_rel)
                    .map_err(|m| invalid(&raw, m.to_string()))?;
                let target = dir.join(hidden);
                let _ = remove_existing(&target);
                overlay_ready &=
                    make_node(&target, &FileKind::CharDevice { major: 0, minor: 0 }, 0).is_ok();
            }
            let path = if parent_rel.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent_rel}/{hidden}")
            };
            sink(record(AppliedKind::Whiteout, path)).map_err(recorded)?;
            continue;
        }
        // Parents already resolved in this layer are not resolved again
        // (a layer lists many files per directory); anything that could
        // change a resolution (a link or a replaced directory) clears this.
        let parent = match dirs_seen.get(&parent_rel) {
            Some(p) => p.clone(),
            None => {
                let p = extract_root
                    .make_dir(&parent_rel)
                    .map_err(|m| invalid(&raw, m.to_string()))?;
                dirs_seen.insert(parent_rel.clone(), p.clone());
                p
            }
        };
        let dest = parent.join(&name);
        let et = header.entry_type();
        if et == tar::EntryType::Symlink
            || (et != tar::EntryType::Directory && dirs_seen.contains_key(&rel))
        {
            dirs_seen.clear();
        }
        if et != tar::EntryType::Directory {
            remove_existing(&dest)
                .map_err(|e| LayerError::io(format!("{what}: replacing {rel}"), e))?;
        }
        // The full path: a full disk or a read-only one is named.
        let io =
            |e: std::io::Error| LayerError::io(format!("{what}: writing {}", dest.display()), e);
        let kind = match et {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_existing(&dest).map_err(io)?;
                        fs::create_dir(&dest).map_err(io)?;
                    }
                    Err(_) => fs::create_dir(&dest).map_err(io)?,
                }
                // Keep the directory writable for us; the real mode is recorded.
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode | 0o700)).map_err(io)?;
                FileKind::Dir
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .map_err(io)?;
                let size = copy_in_large_writes(&mut entry, &mut file).map_err(io)?;
                // Through the open file: no more path lookups for it.
                if is_root {
                    let _ = std::os::unix::fs::fchown(&file, Some(uid as u32), Some(gid as u32));
                    file.set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(io)?;
                } else {
                    file.set_permissions(fs::Permissions::from_mode(mode & 0o777 | 0o600))
                        .map_err(io)?;
                }
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
                let _ = file.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t));
                FileKind::File {
                    content: Content::Path(dest.clone()),
                    size,
                }
            }
            tar::EntryType::Symlink => {
                let target = link_name(&entry);
                symlink(&target, &dest).map_err(io)?;
                FileKind::Symlink(target)
            }
            tar::EntryType::Link => {
                let target_raw = link_name(&entry);
                let target = clean_entry_path(&target_raw)
                    .map_err(|m| invalid(&raw, format!("hard link to {target_raw:?}: {m}")))?
                    .ok_or_else(|| invalid(&raw, "hard link to the root".into()))?;
                let (tp, tn) = match target.rsplit_once('/') {
                    Some((p, n)) => (p.to_string(), n.to_string()),
                    None => (String::new(), target.clone()),
                };
                let source = extract_root
                    .dir(&tp)
                    .map_err(|m| invalid(&raw, m.to_string()))?;
                let earlier_file = source
                    .map(|p| p.join(&tn))
                    .filter(|s| fs::symlink_metadata(s).is_ok_and(|m| m.is_file()));
                match earlier_file {
                    Some(source) => fs::hard_link(&source, &dest).map_err(io)?,
                    None => return Err(invalid(&raw, format!("hard link to {target_raw:?}, which is not an earlier file of the layer"))),
                }
                FileKind::Hardlink(target)
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let kind = match et {
                    tar::EntryType::Fifo => FileKind::Fifo,
                    tar::EntryType::Char => FileKind::CharDevice { major, minor },
                    _ => FileKind::BlockDevice { major, minor },
                };
                if let Err(e) = make_node(&dest, &kind, mode) {
                    tracing::debug!("{what}: {rel}: not created ({e})");
                    not_created.push(rel.clone());
                }
                kind
            }
            // PAX/GNU metadata records are consumed by the reader.
            _ => continue,
        };
        let is_file = matches!(kind, FileKind::File { .. });
        if is_root && !is_file {
            let _ = std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32));
            // Root reads and writes regardless of modes: keep them exact
            // (after chown, which clears setuid bits).
            match kind {
                FileKind::Symlink(_) | FileKind::Dir => {}
                _ => {
                    let _ = fs::set_permissions(&dest, fs::Permissions::from_mode(mode));
                }
            }
        }
        match kind {
            FileKind::Dir => dir_times.push((dest.clone(), mode, mtime)),
            FileKind::File { .. } => {}
            _ => set_times(&dest, mtime),
        }
        if !matches!(kind, FileKind::Symlink(_)) {
            for (k, v) in &xattrs {
                let _ = xattr_set(&dest, k, v);
            }
        }
        sink(record(AppliedKind::Node(kind), rel)).map_err(recorded)?;
    }
    // Directories last, deepest first (entries inside changed their times).
    for (dir, mode, mtime) in dir_times.iter().rev() {
        if is_root {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(*mode));
        }
        set_times(dir, *mtime);
    }
    if !not_created.is_empty() {
        // Reported, never lost: the entries keep them for the image.
        tracing::warn!(
            "{what}: {} device node(s) or fifo(s) could not be created on disk here ({}{}); they stay in the image",
            not_created.len(),
            not_created[..not_created.len().min(3)].join(", "),
            if not_created.len() > 3 { ", ..." } else { "" }
        );
    }
    // Hash to the very end (the zero blocks after the last entry count).
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| LayerError::io(format!("reading {what}"), e))?;
    let (diff_id, uncompressed_size) = rest.finish();
    Ok(Extracted {
        entries: Vec::new(),
        diff_id,
        uncompressed_size,
        overlay_ready: options.overlay_markers && overlay_ready,
    })
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no arguments.
    unsafe { libc::geteuid() == 0 }
}

/// Set a path's times without following a final symlink.
pub fn set_times(path: &Path, mtime: i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid path and a two-element timespec array.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

fn xattr_set(path: &Path, key: &str, value: &[u8]) -> std::io::Result<()> {
    xattr::set(path, key, value)
}

/// Create a fifo or device node (needs privilege for devices).
pub fn make_node(path: &Path, kind: &FileKind, mode: u32) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let (kind_bits, dev) = match kind {
        FileKind::Fifo => (libc::S_IFIFO, 0),
        FileKind::CharDevice { major, minor } => (libc::S_IFCHR, libc::makedev(*major, *minor)),
        FileKind::BlockDevice { major, minor } => (libc::S_IFBLK, libc::makedev(*major, *minor)),
        _ => return Ok(()),
    };
    // SAFETY: `c` is a valid NUL-terminated path; mknod has no other inputs.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind_bits | (mode & 0o7777), dev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What is wrong with one entry of a layer.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    #[error("path climbs out of the root with ..")]
    ClimbsOut,
    #[error("a whiteout of {0:?}")]
    Whiteout(String),
    #[error("naming a directory: {0}")]
    Naming(#[source] std::io::Error),
    #[error("{} is outside the root", .0.display())]
    Outside(PathBuf),
    #[error("parent {0:?} is not a directory")]
    NotADirectory(String),
    #[error("creating {rel:?}: {source}")]
    Creating {
        rel: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{rel:?}: {source}")]
    Opening {
        rel: String,
        #[source]
        source: std::io::Error,
    },
}

/// An entry path made relative and clean; `None` for the root itself.
/// `..` that would climb above the root is refused.
pub fn clean_entry_path(raw: &str) -> Result<Option<String>, EntryProblem> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(EntryProblem::ClimbsOut);
                }
            }
            c => parts.push(c),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The folder a layer is extracted into, held open: its directories are
/// reached by the kernel's resolution inside it (`openat2` with
/// `RESOLVE_IN_ROOT`, see [`crate::in_root`]), symlinks resolved as if it
/// were `/` (absolute targets start from it, `..` stops at it), and named
/// by the host path that reaches them.
struct ExtractRoot {
    dir: RootDir,
    root: PathBuf,
    /// `root` as the kernel names it (links in its own path resolved).
    real_root: PathBuf,
}

impl ExtractRoot {
    fn open(root: &Path) -> std::io::Result<ExtractRoot> {
        fs::create_dir_all(root)?;
        Ok(ExtractRoot {
            dir: RootDir::open(root)?,
            root: root.to_path_buf(),
            real_root: fs::canonicalize(root)?,
        })
    }

    /// The host path of what `fd` holds, under `root` as the caller named it.
    fn name(&self, fd: &OwnedFd) -> Result<PathBuf, EntryProblem> {
        let real = fs::read_link(fd_path(fd)).map_err(EntryProblem::Naming)?;
        let rel = real
            .strip_prefix(&self.real_root)
            .map_err(|_| EntryProblem::Outside(real.clone()))?;
        Ok(if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        })
    }

    /// Directory `rel`, made (0755) where missing.
    fn make_dir(&self, rel: &str) -> Result<PathBuf, EntryProblem> {
        match self.dir.make_dirs(rel) {
            Ok(fd) => self.name(&fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                Err(EntryProblem::NotADirectory(rel.to_string()))
            }
            Err(source) => Err(EntryProblem::Creating {
                rel: rel.to_string(),
                source,
            }),
        }
    }

    /// Directory `rel` as it is (`None` where missing).
    fn dir(&self, rel: &str) -> Result<Option<PathBuf>, EntryProblem> {
        match self.dir.open_path(rel, true, libc::O_DIRECTORY) {
            Ok(fd) => self.name(&fd).map(Some),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                Ok(None)
            }
            Err(source) => Err(EntryProblem::Opening {
                rel: rel.to_string(),
                source,
            }),
        }
    }
}

fn remove_existing(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

/// Resolve the symlinks of `path` inside a root that links cannot leave
/// (`..` stops at the root, absolute targets start from it). `readlink`
/// gives the target of a root-relative path that is a symlink. With
/// `follow_last` false the last component is kept as it is. Returns the
/// root-relative result; `None` after too many links.
pub fn resolve_in_root(
    path: &str,
    follow_last: bool,
    readlink: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        match comp.as_str() {
            "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        current.push(comp);
        if pending.is_empty() && !follow_last {
            break;
        }
        if let Some(target) = readlink(&current.join("/")) {
            hops += 1;
            if hops > 255 {
                return None;
            }
            current.pop();
            if target.starts_with('/') {
                current.clear();
            }
            pending.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                    .map(String::from),
            );
        }
    }
    Some(current.join("/"))
}

/// A file's bytes copied in writes of up to 256 KiB: `io::copy`'s 8 KiB
/// made a Debian base's extraction 22,000 write calls (a buffer per
/// thread, reused from file to file).
fn copy_in_large_writes(
    from: &mut impl Read,
    to: &mut impl std::io::Write,
) -> std::io::Result<u64> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 256 << 10]);
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut total = 0u64;
        loop {
            let n = match from.read(&mut buf[..]) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            to.write_all(&buf[..n])?;
            total += n as u64;
        }
    })
}
