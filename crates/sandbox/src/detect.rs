//! The auto policy: which executor this machine allows, decided once per
//! build and logged with the reason.

use crate::directory::{ChrootExecutor, PrivateCopyExecutor};
use crate::executor::Executor;
use crate::overlay::OverlayExecutor;
use crate::{in_user_namespace, probe_mounts, sys, SandboxError};
use std::path::Path;

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationMode {
    #[default]
    Auto,
    Userns,
    Chroot,
}

/// The executor for `mode` here; `work` is a scratch directory for the
/// probe. Overlay in namespaces where mounts work; else chroot as real
/// root, or a private copy inside a user namespace.
pub fn detect(mode: IsolationMode, work: &Path) -> Result<Box<dyn Executor>, SandboxError> {
    let in_userns = in_user_namespace();
    let root = sys::geteuid() == 0;
    if mode == IsolationMode::Chroot {
        if !root || in_userns {
            return Err(SandboxError::Unavailable(
                "--isolation chroot needs kiln to run as root".into(),
            ));
        }
        tracing::info!("isolation: chroot (asked for)");
        return Ok(Box::new(ChrootExecutor));
    }
    match probe_mounts(&work.join("probe"), in_userns) {
        Ok(()) => {
            tracing::info!(
                "isolation: {}namespaces with an overlay root (snapshots read only what changed)",
                if in_userns { "user " } else { "" }
            );
            Ok(Box::new(OverlayExecutor {
                userxattr: in_userns,
            }))
        }
        Err(why) if mode == IsolationMode::Auto && root && !in_userns => {
            tracing::info!(
                "isolation: chroot (namespaces or mounts are not permitted here: {why})"
            );
            Ok(Box::new(ChrootExecutor))
        }
        Err(why) if in_userns => {
            tracing::warn!("isolation: user namespaces without overlayfs ({why}); steps run in a private copy and are diffed");
            Ok(Box::new(PrivateCopyExecutor))
        }
        Err(why) => Err(SandboxError::Unavailable(format!(
            "namespaces are not available here: {why}"
        ))),
    }
}
