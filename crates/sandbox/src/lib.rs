//! The sandbox: running a RUN step's command inside an image's root file
//! system without a daemon.
//!
//! - `userns`: an unprivileged kiln re-executes itself inside a new user
//!   namespace (IDs mapped from /etc/subuid and /etc/subgid through
//!   newuidmap/newgidmap), where it is root: it can own files as any image
//!   ID, mount overlayfs with `userxattr`, proc, devpts and tmpfs.
//! - `run`: each step runs in a helper process (`kiln __run SPEC`) that
//!   makes mount, pid, ipc and uts namespaces, mounts the step's root
//!   (overlay of the stage root and earlier steps' upper directories),
//!   /proc and a minimal /dev, binds resolv.conf and hosts, chroots,
//!   becomes the step's user and execs the command.
//! - chroot mode: for root where namespaces and mounts are blocked (a
//!   Kubernetes pod): the command runs chrooted in the stage's root
//!   directory, nothing is mounted, and the caller diffs the tree.

mod sys;

mod descriptors;
mod detect;
mod directory;
pub mod emulation;
mod entrypoint;
mod executor;
pub mod fake;
mod guard;
pub mod helper;
mod in_place;
mod isolation;
mod overlay;
mod own_binary;
pub mod run;
pub mod spec;
mod staged;
pub mod userns;
mod watch;

pub use detect::{detect, InPlaceOptions, IsolationMode};
pub use directory::{ChrootBecause, DirectoryExecutor};
pub use entrypoint::{enter_for_build, entrypoint};
pub use executor::{Executor, OutputSink, Process, StageRoot, StepOutcome, StepRequest};
pub use in_place::{
    clear_root, kiln_image_home, mount_points, FixedRoot, InPlaceExecutor, IMAGE_MARKER,
};
pub use isolation::{Isolation, RootKind};
pub use overlay::OverlayExecutor;
pub use run::{probe_mounts, run_step, StepOutput};
pub use spec::{HostFiles, MountSource, RootSpec, RunSpec, StepMount};
pub use staged::copy_tree;
pub use userns::{enter_user_namespace, finish_entering, in_user_namespace};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Setup(String),
    /// The caller could not give the step its root.
    #[error(transparent)]
    Root(Box<dyn std::error::Error + Send + Sync>),
    /// No executor can run steps here.
    #[error("{0}")]
    Unavailable(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<String> for SandboxError {
    fn from(message: String) -> Self {
        SandboxError::Setup(message)
    }
}

impl From<&str> for SandboxError {
    fn from(message: &str) -> Self {
        SandboxError::Setup(message.to_string())
    }
}
