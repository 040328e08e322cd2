//! kiln starting itself again (the step helper, the user-namespace
//! child): always the program that is running, through /proc/self/exe,
//! never whatever a step has since put at its path. In kiln's image a
//! RUN (root, in the same container) can replace /kiln/bin/kiln; the next
//! step still runs the real kiln.

use crate::SandboxError;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The running program: /proc/self/exe, or its path where there is no /proc.
fn path() -> Result<PathBuf, SandboxError> {
    let running = Path::new("/proc/self/exe");
    if running.exists() {
        return Ok(running.to_path_buf());
    }
    std::env::current_exe().map_err(|e| SandboxError::io("finding kiln's own binary", e))
}

/// A command running kiln again, under the name it was started with.
pub fn command() -> Result<Command, SandboxError> {
    let mut command = Command::new(path()?);
    if let Some(name) = std::env::args_os().next() {
        command.arg0(name);
    }
    Ok(command)
}
