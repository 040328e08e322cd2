//! A directory root that the step changes in place, diffed afterwards
//! (metadata walk of the whole tree): with namespaces but no overlayfs
//! (`DirectoryExecutor::private_copy`), or with chroot alone, where
//! namespaces and mounts are blocked (`DirectoryExecutor::chroot`).

use crate::executor::{
    create_dir, host_files, Executor, OutputSink, StageRoot, StepOutcome, StepRequest,
};
use crate::spec::{HostFiles, RootSpec, RunSpec};
use crate::{run_step, SandboxError};
use kiln_layer::in_root::{self, NewNode, RootDir};
use std::os::fd::OwnedFd;
use std::path::Path;

/// A directory root changed in place: in namespaces (a private copy of
/// the stage, where overlayfs is unavailable), or with chroot alone.
pub struct DirectoryExecutor {
    namespaces: bool,
    /// Why chroot mode runs here: what a failed step that needed /proc or
    /// /dev is told.
    chroot_because: ChrootBecause,
}

/// Why steps run in chroot mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChrootBecause {
    /// `--isolation chroot`: mounts may be permitted, chroot mode uses none.
    Asked,
    /// Namespaces or mounts are not permitted here.
    MountsBlocked,
}

impl DirectoryExecutor {
    /// Namespaces and a private copy of the stage as the root.
    pub fn private_copy() -> DirectoryExecutor {
        DirectoryExecutor {
            namespaces: true,
            chroot_because: ChrootBecause::Asked,
        }
    }

    /// chroot only (as root, by request or where namespaces and mounts
    /// are blocked).
    pub fn chroot(because: ChrootBecause) -> DirectoryExecutor {
        DirectoryExecutor {
            namespaces: false,
            chroot_because: because,
        }
    }
}

impl Executor for DirectoryExecutor {
    fn describe(&self) -> &'static str {
        match self.namespaces {
            true => "user namespaces with a private copy of the root",
            false => "chroot",
        }
    }
    fn run(
        &self,
        step: &StepRequest,
        root: &mut dyn StageRoot,
        output: OutputSink<'_>,
    ) -> Result<StepOutcome, SandboxError> {
        run_in_directory(step, root, output, self)
    }
}

fn run_in_directory(
    step: &StepRequest,
    root: &mut dyn StageRoot,
    output: OutputSink<'_>,
    executor: &DirectoryExecutor,
) -> Result<StepOutcome, SandboxError> {
    let namespaces = executor.namespaces;
    if step.process.no_network && !namespaces {
        return Err(no_network_namespace("chroot mode"));
    }
    let dir = &step.step_dir;
    create_dir(dir)?;
    let root_dir = root.directory()?;
    let (resolv, hosts) = host_files(dir);
    let before = kiln_snapshot::index(&root_dir, &step.ignore)
        .map_err(|e| SandboxError::io("indexing the root", e))?;
    let (root_spec, restore) = if namespaces {
        let host_files = HostFiles {
            resolv_conf: Some(resolv),
            hosts: Some(hosts),
        };
        let root = root_dir.clone();
        (RootSpec::Namespaced { root, host_files }, Vec::new())
    } else {
        let restore = inject_chroot_files(&root_dir, &resolv, &hosts);
        (
            RootSpec::Chroot {
                root: root_dir.clone(),
            },
            restore,
        )
    };
    let spec = RunSpec {
        mounts: if namespaces {
            step.mounts.clone()
        } else {
            Vec::new()
        },
        ..RunSpec::new(root_spec, &step.process)
    };
    // Without namespaces nothing can be mounted: the mounts are copied in.
    let staged = match namespaces {
        true => None,
        false => Some(crate::staged::stage(&root_dir, &step.mounts)?),
    };
    // Whether the step's output names /proc or /dev: only then can the
    // chroot's lack of them be why it failed.
    let named_proc_or_dev = std::sync::atomic::AtomicBool::new(false);
    let watched = |line: &str| {
        if line.contains("/proc") || line.contains("/dev") {
            named_proc_or_dev.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        output(line)
    };
    let result = run_step(&spec, dir, &watched);
    if let Some(s) = staged {
        s.finish()?;
    }
    for injected in restore {
        injected.put_back();
    }
    let out = result?;
    if out.exit_code != 0 {
        let suspect = !namespaces && named_proc_or_dev.into_inner();
        let hint = suspect
            .then(|| chroot_hint(&root_dir, executor.chroot_because))
            .flatten();
        return Ok(StepOutcome::failed(out.exit_code, hint));
    }
    let started = std::time::Instant::now();
    let changes = kiln_snapshot::tree_diff(&root_dir, &before, &step.ignore)
        .map_err(|e| SandboxError::io("diffing the root", e))?;
    Ok(StepOutcome::succeeded(
        changes,
        None,
        "a full-tree diff",
        started,
    ))
}

/// `RUN --network=none` where no network namespace can be made: refused,
/// never run with the network.
pub(crate) fn no_network_namespace(mode: &str) -> SandboxError {
    SandboxError::Unavailable(format!(
        "RUN --network=none needs a network namespace, which {mode} cannot create here; it works with user namespaces, or as root where namespaces are permitted"
    ))
}

/// What a chroot lacks that a failed step may have needed: /proc (never
/// mounted here) and /dev nodes (unusable on a nodev file system).
fn chroot_hint(root: &Path, because: ChrootBecause) -> Option<String> {
    let no_proc = !root.join("proc/self").exists();
    let no_dev = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("dev/null"))
        .is_err();
    let missing = match (no_proc, no_dev) {
        (true, true) => "/proc and /dev are",
        (true, false) => "/proc is",
        (false, true) => "/dev is",
        (false, false) => return None,
    };
    Some(match because {
        ChrootBecause::MountsBlocked => format!("{missing} unavailable in chroot mode (no mounts are permitted here); steps that need them run with --isolation in-place in kiln's image, or with user namespaces"),
        ChrootBecause::Asked => format!("{missing} unavailable: mounts are not used in chroot mode; steps that need them run with --isolation auto (namespaces, where permitted), or --isolation in-place in kiln's image"),
    })
}

/// A file kiln wrote into a chroot's /etc, and what to put back: the
/// directory is held open, so whatever the step made of /etc (a link to
/// the host, say), the file put back is the one kiln wrote.
struct Injected {
    etc: OwnedFd,
    name: &'static str,
    original: Option<Vec<u8>>,
}

impl Injected {
    fn put_back(self) {
        let _ = match self.original {
            Some(bytes) => write_in(&self.etc, self.name, &bytes),
            None => in_root::unlink_in(&self.etc, self.name),
        };
    }
}

fn write_in(dir: &OwnedFd, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
    let mut f = std::fs::File::from(in_root::open_in(dir, name, flags, 0o644)?);
    std::io::Write::write_all(&mut f, bytes)
}

fn read_in(dir: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    let mut f = std::fs::File::from(in_root::open_in(dir, name, libc::O_RDONLY, 0).ok()?);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes).ok()?;
    Some(bytes)
}

/// chroot mode mounts nothing: write resolv.conf, hosts and the basic
/// /dev nodes into the root (each path resolved inside it, links the
/// image made included); returns what to put back afterwards.
fn inject_chroot_files(root: &Path, resolv: &Path, hosts: &Path) -> Vec<Injected> {
    let mut restore = Vec::new();
    let Ok(in_root) = RootDir::open(root) else {
        return restore;
    };
    if let Ok(etc) = in_root.open_path("/etc", true, libc::O_DIRECTORY) {
        for (src, name) in [(resolv, "resolv.conf"), (hosts, "hosts")] {
            // The image's own link is left as it is.
            if in_root::file_type_in(&etc, name).is_ok_and(|t| t != libc::S_IFREG) {
                continue;
            }
            let Ok(bytes) = std::fs::read(src) else {
                continue;
            };
            let original = read_in(&etc, name);
            if write_in(&etc, name, &bytes).is_ok() {
                if let Ok(etc) = etc.try_clone() {
                    restore.push(Injected {
                        etc,
                        name,
                        original,
                    });
                }
            }
        }
    }
    // The same mount points the namespaced modes have.
    for d in ["/proc", "/sys"] {
        let _ = in_root.make(d, NewNode::Dir);
    }
    if let Ok(dev) = in_root.make_dirs("/dev") {
        for (name, minor) in [
            ("null", 3),
            ("zero", 5),
            ("full", 7),
            ("random", 8),
            ("urandom", 9),
        ] {
            if in_root::file_type_in(&dev, name).is_err() {
                let _ = in_root::mknod_char_in(&dev, name, 1, minor);
            }
        }
    }
    restore
}
