//! What the helper process needs to run one step.

use crate::executor::Process;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The step's root and how it is isolated: one variant per isolation, so
/// an overlay root without namespaces cannot be asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RootSpec {
    /// Namespaces and an overlayfs root: `lowers` top first; `upper`
    /// receives the changes.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        merged: PathBuf,
        /// `userxattr` (inside a user namespace).
        userxattr: bool,
        host_files: HostFiles,
    },
    /// Namespaces, and this directory (bound onto itself) as the root.
    Namespaced {
        root: PathBuf,
        host_files: HostFiles,
    },
    /// chroot into this directory: no namespaces, nothing mounted.
    Chroot { root: PathBuf },
}

/// Files bound over the root's /etc/resolv.conf and /etc/hosts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostFiles {
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
}

/// A `RUN --mount`: what appears at `target` (absolute, inside the root)
/// while the step runs, and never in its layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMount {
    pub target: String,
    pub source: MountSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A host file or directory (a cache directory, a secret file, a bind
    /// source); `writable` lets the step change it.
    Host { path: PathBuf, writable: bool },
    /// An empty tmpfs (`size` in bytes).
    Tmpfs { size: Option<u64> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub root: RootSpec,
    pub process: Process,
    pub hostname: String,
    #[serde(default)]
    pub mounts: Vec<StepMount>,
}

impl RunSpec {
    pub fn new(root: RootSpec, process: &Process) -> RunSpec {
        RunSpec {
            root,
            process: process.clone(),
            hostname: crate::executor::HOSTNAME.into(),
            mounts: Vec::new(),
        }
    }
}
