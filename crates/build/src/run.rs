//! RUN: the step's root (the stage's tree written out once, then overlay
//! upper directories on top, or the directory itself in chroot mode), the
//! sandbox run, and the step's changes folded back into the tree.

use crate::fstree::{FsTree, Node, NodeKind};
use crate::materialize::materialize;
use kiln_layer::Content;
use kiln_sandbox::{run_step, RootSpec, RunSpec};
use kiln_snapshot::{Change, Kind, Meta};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationMode {
    #[default]
    Auto,
    Userns,
    Chroot,
}

/// How steps run here, decided once per build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// Namespaces and an overlay root; snapshots read the upper directory.
    Overlay { userxattr: bool },
    /// Namespaces, the stage's directory as root, the fallback diff.
    PrivateCopy,
    /// chroot only (root where namespaces and mounts are blocked).
    Chroot,
}

pub(crate) fn decide(mode: IsolationMode, work: &Path) -> Result<Isolation, String> {
    let in_userns = kiln_sandbox::in_user_namespace();
    // SAFETY: geteuid has no arguments.
    let root = unsafe { libc::geteuid() } == 0;
    let chosen = match mode {
        IsolationMode::Chroot => {
            if !root || in_userns {
                return Err("--isolation chroot needs kiln to run as root".into());
            }
            tracing::info!("isolation: chroot (asked for)");
            Isolation::Chroot
        }
        IsolationMode::Auto | IsolationMode::Userns => {
            match kiln_sandbox::probe_mounts(&work.join("probe"), in_userns) {
                Ok(()) => {
                    tracing::info!(
                    "isolation: {}namespaces with an overlay root (snapshots read only what changed)",
                    if in_userns { "user " } else { "" }
                );
                    Isolation::Overlay {
                        userxattr: in_userns,
                    }
                }
                Err(why) if mode == IsolationMode::Auto && root && !in_userns => {
                    tracing::info!(
                        "isolation: chroot (namespaces or mounts are not permitted here: {why})"
                    );
                    Isolation::Chroot
                }
                Err(why) if in_userns => {
                    tracing::warn!("isolation: user namespaces without overlayfs ({why}); steps run in a private copy and are diffed");
                    Isolation::PrivateCopy
                }
                Err(why) => return Err(format!("namespaces are not available here: {why}")),
            }
        }
    };
    Ok(chosen)
}

/// A stage's root on disk: the tree written out, and the upper
/// directories of its steps (newest last).
#[derive(Debug, Clone)]
pub(crate) struct Rootfs {
    pub base: PathBuf,
    pub uppers: Vec<PathBuf>,
}

pub(crate) struct StepRequest {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub no_network: bool,
    pub ignore: Vec<String>,
    /// A fresh directory for this step's files.
    pub step_dir: PathBuf,
}

/// What a step left: its exit code, and (overlay) the upper directory,
/// which can serve as the lower layer of the step's layer.
pub(crate) struct StepResult {
    pub exit_code: i32,
    pub upper: Option<PathBuf>,
}

impl StepResult {
    fn failed(exit_code: i32) -> StepResult {
        StepResult {
            exit_code,
            upper: None,
        }
    }
}

/// Run a step; on success its changes are in `tree` (marked as changes).
/// With `lowers` (the image's layers as directories, top first) an overlay
/// step needs no copy of the tree.
pub(crate) fn run(
    tree: &mut FsTree,
    rootfs: &mut Option<Rootfs>,
    lowers: Option<Vec<PathBuf>>,
    iso: &Isolation,
    req: StepRequest,
    log: &(dyn Fn(&str) + Sync),
) -> Result<StepResult, String> {
    std::fs::create_dir_all(&req.step_dir)
        .map_err(|e| format!("creating {}: {e}", req.step_dir.display()))?;
    let overlay = matches!(iso, Isolation::Overlay { .. });
    if let (true, Some(l)) = (overlay, &lowers) {
        tracing::debug!(
            "root: {} layer directories stacked as overlay lower layers",
            l.len()
        );
    }
    if rootfs.is_none() && !(overlay && lowers.is_some()) {
        let base = req.step_dir.join("rootfs");
        let started = std::time::Instant::now();
        materialize(tree, &base)?;
        tracing::debug!(
            "root: the stage's {} files written out in {:.3}s",
            tree.len(),
            started.elapsed().as_secs_f64()
        );
        *rootfs = Some(Rootfs {
            base,
            uppers: Vec::new(),
        });
    }
    // What the sandbox adds and the snapshot must not report. The mount
    // points /proc, /sys and /dev stay (as with BuildKit), their contents
    // never do.
    let mut ignore = req.ignore.clone();
    for p in ["/etc/resolv.conf", "/etc/hosts"] {
        if tree.get(p).is_none() {
            ignore.push(p.to_string());
        }
    }
    let resolv = req.step_dir.join("resolv.conf");
    let hosts = req.step_dir.join("hosts");
    let _ = std::fs::copy("/etc/resolv.conf", &resolv)
        .or_else(|_| std::fs::write(&resolv, "").map(|_| 0));
    let _ = std::fs::write(
        &hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tkiln\n",
    );
    let spec = |root: RootSpec, namespaces: bool| RunSpec {
        root,
        argv: req.argv.clone(),
        env: req.env.clone(),
        cwd: req.cwd.clone(),
        uid: req.uid,
        gid: req.gid,
        groups: req.groups.clone(),
        hostname: "kiln".into(),
        resolv_conf: namespaces.then(|| resolv.clone()),
        hosts: namespaces.then(|| hosts.clone()),
        namespaces,
        no_network: req.no_network,
    };
    match iso {
        Isolation::Overlay { userxattr } => {
            let upper = req.step_dir.join("upper");
            let work = req.step_dir.join("work");
            let merged = req.step_dir.join("merged");
            for d in [&upper, &work, &merged] {
                std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
            }
            let lowers: Vec<PathBuf> = match (lowers, rootfs.as_ref()) {
                (Some(l), _) => l,
                (None, Some(fs)) => {
                    let mut l: Vec<PathBuf> = fs.uppers.iter().rev().cloned().collect();
                    l.push(fs.base.clone());
                    l
                }
                (None, None) => return Err("no root file system".into()),
            };
            let root = RootSpec::Overlay {
                lowers,
                upper: upper.clone(),
                work,
                merged,
                userxattr: *userxattr,
            };
            let out = run_step(&spec(root, true), &req.step_dir, log).map_err(|e| e.to_string())?;
            if out.exit_code != 0 {
                return Ok(StepResult::failed(out.exit_code));
            }
            let started = std::time::Instant::now();
            let changes = kiln_snapshot::upper_changes(&upper, &ignore)
                .map_err(|e| format!("reading the step's changes: {e}"))?;
            let n = changes.len();
            apply_changes(tree, changes)?;
            tracing::debug!(
                "snapshot: {n} changes from the upper directory in {:.4}s",
                started.elapsed().as_secs_f64()
            );
            if let Some(fs) = rootfs.as_mut() {
                fs.uppers.push(upper.clone());
            }
            Ok(StepResult {
                exit_code: 0,
                upper: Some(upper),
            })
        }
        Isolation::PrivateCopy | Isolation::Chroot => {
            let namespaces = *iso == Isolation::PrivateCopy;
            let Some(fs) = rootfs.as_ref() else {
                return Err("no root file system".into());
            };
            let root = fs.base.clone();
            let before = kiln_snapshot::index(&root, &ignore)
                .map_err(|e| format!("indexing the root: {e}"))?;
            let restore = if namespaces {
                Vec::new()
            } else {
                inject_chroot_files(&root, &resolv, &hosts)
            };
            let result = run_step(
                &spec(RootSpec::Directory { root: root.clone() }, namespaces),
                &req.step_dir,
                log,
            );
            for (path, original) in restore {
                match original {
                    Some(bytes) => {
                        let _ = std::fs::write(&path, bytes);
                    }
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            let out = result.map_err(|e| e.to_string())?;
            if out.exit_code != 0 {
                return Ok(StepResult::failed(out.exit_code));
            }
            let started = std::time::Instant::now();
            let changes = kiln_snapshot::tree_diff(&root, &before, &ignore)
                .map_err(|e| format!("diffing the root: {e}"))?;
            let n = changes.len();
            apply_changes(tree, changes)?;
            tracing::debug!(
                "snapshot: {n} changes from a full-tree diff in {:.4}s",
                started.elapsed().as_secs_f64()
            );
            Ok(StepResult {
                exit_code: 0,
                upper: None,
            })
        }
    }
}

/// chroot mode mounts nothing: write resolv.conf, hosts and the basic
/// /dev nodes into the root; returns what to put back afterwards.
fn inject_chroot_files(
    root: &Path,
    resolv: &Path,
    hosts: &Path,
) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut restore = Vec::new();
    let etc = root.join("etc");
    if etc.is_dir() {
        for (src, name) in [(resolv, "resolv.conf"), (hosts, "hosts")] {
            let target = etc.join(name);
            if target
                .symlink_metadata()
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false)
            {
                continue;
            }
            restore.push((target.clone(), std::fs::read(&target).ok()));
            let _ = std::fs::copy(src, &target);
        }
    }
    // The same mount points the namespaced modes have.
    for d in ["proc", "sys"] {
        let _ = std::fs::create_dir(root.join(d));
    }
    let dev = root.join("dev");
    let _ = std::fs::create_dir_all(&dev);
    for (name, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        let p = dev.join(name);
        if p.symlink_metadata().is_err() {
            let _ = kiln_layer::apply::make_node(
                &p,
                &kiln_layer::apply::AppliedKind::CharDevice { major: 1, minor },
                0o666,
            );
        }
    }
    restore
}

/// Fold a step's changes into the tree; copies that changed nothing are
/// dropped.
pub(crate) fn apply_changes(tree: &mut FsTree, changes: Vec<Change>) -> Result<(), String> {
    let mut inodes: HashMap<(u64, u64), u64> = HashMap::new();
    for change in changes {
        match change {
            Change::Deleted(p) => tree.remove(&p),
            Change::Opaque(p) => tree.clear_dir(&p),
            Change::Upsert(p, meta) => {
                if let Some(old) = tree.get(&p) {
                    if unchanged(old, &meta) {
                        continue;
                    }
                }
                let inode = match meta.link_key {
                    Some(k) => *inodes.entry(k).or_insert_with(|| tree.new_inode()),
                    None => tree.new_inode(),
                };
                let kind = match &meta.kind {
                    Kind::Dir => NodeKind::Dir,
                    Kind::File { size } => NodeKind::File {
                        content: Content::Path(meta.disk.clone()),
                        size: *size,
                    },
                    Kind::Symlink(t) => NodeKind::Symlink(t.clone()),
                    Kind::Fifo => NodeKind::Fifo,
                    Kind::CharDevice { major, minor } => NodeKind::CharDevice {
                        major: *major,
                        minor: *minor,
                    },
                    Kind::BlockDevice { major, minor } => NodeKind::BlockDevice {
                        major: *major,
                        minor: *minor,
                    },
                    // Sockets do not belong in images.
                    Kind::Socket => continue,
                };
                let node = Node {
                    kind,
                    mode: meta.mode,
                    uid: meta.uid,
                    gid: meta.gid,
                    mtime: meta.mtime,
                    xattrs: meta.xattrs.clone(),
                    inode,
                };
                match tree.get(&p) {
                    Some(old) if old.is_dir() && node.is_dir() => {
                        tree.update(&p, |n| {
                            n.mode = node.mode;
                            n.uid = node.uid;
                            n.gid = node.gid;
                            n.mtime = node.mtime;
                            n.xattrs = node.xattrs.clone();
                        });
                    }
                    Some(old) if old.is_dir() => {
                        tree.remove(&p);
                        tree.insert(&p, node).map_err(|e| e.to_string())?;
                    }
                    _ => tree.insert(&p, node).map_err(|e| e.to_string())?,
                }
            }
        }
    }
    Ok(())
}

/// A copy-up (or a touched entry) identical to what the tree has.
fn unchanged(old: &Node, meta: &Meta) -> bool {
    if old.mode != meta.mode
        || old.uid != meta.uid
        || old.gid != meta.gid
        || old.mtime != meta.mtime
        || old.xattrs != meta.xattrs
    {
        return false;
    }
    match (&old.kind, &meta.kind) {
        (NodeKind::Dir, Kind::Dir) => true,
        (NodeKind::Symlink(a), Kind::Symlink(b)) => a == b,
        (NodeKind::File { content, size }, Kind::File { size: s }) => {
            size == s && same_content(content, &meta.disk)
        }
        (NodeKind::Fifo, Kind::Fifo) => true,
        (NodeKind::CharDevice { major, minor }, Kind::CharDevice { major: a, minor: b }) => {
            major == a && minor == b
        }
        (NodeKind::BlockDevice { major, minor }, Kind::BlockDevice { major: a, minor: b }) => {
            major == a && minor == b
        }
        _ => false,
    }
}

fn same_content(content: &Content, disk: &Path) -> bool {
    let Ok(mut b) = std::fs::File::open(disk) else {
        return false;
    };
    let mut a: Box<dyn Read> = match content {
        Content::Path(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(_) => return false,
        },
        Content::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.as_slice().to_vec())),
    };
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let n = match read_full(&mut a, &mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        let m = match read_full(&mut b, &mut bb) {
            Ok(m) => m,
            Err(_) => return false,
        };
        if n != m || ba[..n] != bb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
