//! A directory root that the step changes in place, diffed afterwards
//! (metadata walk of the whole tree): with namespaces but no overlayfs
//! (`DirectoryExecutor::private_copy`), or with chroot alone, where
//! namespaces and mounts are blocked (`DirectoryExecutor::chroot`).

use crate::executor::{
    create_dir, host_files, Executor, OutputSink, StageRoot, StepOutcome, StepRequest,
};
use crate::spec::{HostFiles, RootSpec, RunSpec};
use crate::{run_step, sys, SandboxError};
use std::path::{Path, PathBuf};

/// A directory root changed in place: in namespaces (a private copy of
/// the stage, where overlayfs is unavailable), or with chroot alone.
pub struct DirectoryExecutor {
    namespaces: bool,
}

impl DirectoryExecutor {
    /// Namespaces and a private copy of the stage as the root.
    pub fn private_copy() -> DirectoryExecutor {
        DirectoryExecutor { namespaces: true }
    }

    /// chroot only (root where namespaces and mounts are blocked).
    pub fn chroot() -> DirectoryExecutor {
        DirectoryExecutor { namespaces: false }
    }
}

impl Executor for DirectoryExecutor {
    fn describe(&self) -> &'static str {
        match self.namespaces {
            true => "user namespaces with a private copy of the root",
            false => "chroot",
        }
    }
    fn changes_root_in_place(&self) -> bool {
        true
    }
    fn run(
        &self,
        step: &StepRequest,
        root: &mut dyn StageRoot,
        output: OutputSink<'_>,
    ) -> Result<StepOutcome, SandboxError> {
        run_in_directory(step, root, output, self.namespaces)
    }
}

fn run_in_directory(
    step: &StepRequest,
    root: &mut dyn StageRoot,
    output: OutputSink<'_>,
    namespaces: bool,
) -> Result<StepOutcome, SandboxError> {
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
    let result = run_step(&spec, dir, output);
    if let Some(s) = staged {
        s.finish()?;
    }
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
    let out = result?;
    if out.exit_code != 0 {
        let hint = (!namespaces).then(|| chroot_hint(&root_dir)).flatten();
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
fn chroot_hint(root: &Path) -> Option<String> {
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
    Some(format!("{missing} unavailable in chroot mode (no mounts are permitted here); steps that need them run with --isolation in-place in kiln's image, or with user namespaces"))
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
            let _ = sys::mknod_char(&p, 1, minor, 0o666);
        }
    }
    restore
}
