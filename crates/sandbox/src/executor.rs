//! The `Executor` seam: run one step's process on a stage's root and say
//! what it changed. Each isolation mode is one executor, and each reads
//! changes the way its root allows (overlay: the upper directory; a
//! directory root: a diff of the tree), so the snapshot mode is chosen
//! with the isolation. The engine supplies the root through `StageRoot`
//! in the form the executor asks for.

use crate::SandboxError;
use kiln_snapshot::Change;
use std::path::{Path, PathBuf};

/// The process a step runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Process {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    /// Working directory inside the root.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// `RUN --network=none`.
    pub no_network: bool,
}

/// One step to run.
#[derive(Debug, Clone)]
pub struct StepRequest {
    pub process: Process,
    /// `RUN --mount`s (their targets are in `ignore` too).
    pub mounts: Vec<crate::spec::StepMount>,
    /// Paths (absolute) whose changes are never reported.
    pub ignore: Vec<String>,
    /// A fresh directory for this step's own files.
    pub step_dir: PathBuf,
}

/// The stage's file system, in the two forms executors use.
pub trait StageRoot {
    /// Read-only directories to stack as overlay lower layers, top first.
    fn lowers(&mut self) -> Result<Vec<PathBuf>, SandboxError>;
    /// One directory holding the whole tree, which the step changes in place.
    fn directory(&mut self) -> Result<PathBuf, SandboxError>;
    /// Every path (absolute) the stage's tree holds before the step.
    fn paths(&self) -> Vec<String>;
}

/// What a step did.
#[derive(Debug, Default)]
pub struct StepOutcome {
    pub exit_code: i32,
    /// What changed (empty unless the exit code is 0).
    pub changes: Vec<Change>,
    /// The overlay upper directory, reusable as the step's layer directory.
    pub upper: Option<PathBuf>,
    /// On failure: what the isolation lacked that the step may have needed.
    pub hint: Option<String>,
}

impl StepOutcome {
    /// A step that exited with `exit_code` (not 0): no changes are read.
    pub(crate) fn failed(exit_code: i32, hint: Option<String>) -> StepOutcome {
        StepOutcome {
            exit_code,
            hint,
            ..Default::default()
        }
    }

    /// A step that succeeded: its changes, read by `how` since `started`.
    pub(crate) fn succeeded(
        changes: Vec<Change>,
        upper: Option<PathBuf>,
        how: &str,
        started: std::time::Instant,
    ) -> StepOutcome {
        tracing::debug!(
            "snapshot: {} changes from {how} in {:.4}s",
            changes.len(),
            started.elapsed().as_secs_f64()
        );
        StepOutcome {
            exit_code: 0,
            changes,
            upper,
            hint: None,
        }
    }
}

/// Where the step's output lines go.
pub type OutputSink<'a> = &'a (dyn Fn(&str) + Sync);

/// One way of running steps.
pub trait Executor: Send + Sync {
    /// For logs: how steps are isolated.
    fn describe(&self) -> &'static str;
    fn run(
        &self,
        step: &StepRequest,
        root: &mut dyn StageRoot,
        output: OutputSink<'_>,
    ) -> Result<StepOutcome, SandboxError>;
}

/// A shared executor is one too: a caller can keep a handle on it (a test
/// asks a fake what ran).
impl<E: Executor + ?Sized> Executor for std::sync::Arc<E> {
    fn describe(&self) -> &'static str {
        (**self).describe()
    }
    fn run(
        &self,
        step: &StepRequest,
        root: &mut dyn StageRoot,
        output: OutputSink<'_>,
    ) -> Result<StepOutcome, SandboxError> {
        (**self).run(step, root, output)
    }
}

pub(crate) fn create_dir(d: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(d).map_err(|e| SandboxError::io(format!("creating {}", d.display()), e))
}

/// resolv.conf (the host's) and hosts for the step, in its directory.
pub(crate) fn host_files(step_dir: &Path) -> (PathBuf, PathBuf) {
    let resolv = step_dir.join("resolv.conf");
    let hosts = step_dir.join("hosts");
    let _ = std::fs::copy("/etc/resolv.conf", &resolv)
        .or_else(|_| std::fs::write(&resolv, "").map(|_| 0));
    let _ = std::fs::write(
        &hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tkiln\n",
    );
    (resolv, hosts)
}

pub(crate) const HOSTNAME: &str = "kiln";
