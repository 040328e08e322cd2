//! What the helper process needs to run one step.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RootSpec {
    /// Mount overlayfs: `lowers` top first; `upper` receives the changes.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        merged: PathBuf,
        /// `userxattr` (inside a user namespace).
        userxattr: bool,
    },
    /// Run directly in this directory (chroot mode).
    Directory { root: PathBuf },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub root: RootSpec,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    /// Working directory inside the root.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub hostname: String,
    /// Host files bound over /etc/resolv.conf and /etc/hosts.
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    /// Make mount/pid/ipc/uts namespaces and mount /proc, /dev.
    pub namespaces: bool,
    /// A private network namespace (`RUN --network=none`).
    pub no_network: bool,
}
