//! The auto policy: which executor this machine allows, decided once per
//! build and logged with the reason.

use crate::directory::{ChrootBecause, DirectoryExecutor};
use crate::in_place::{kiln_image_home, InPlaceExecutor};
use crate::isolation::{Isolation, RootKind};
use crate::overlay::OverlayExecutor;
use crate::{in_user_namespace, probe_mounts, sys, SandboxError};
use std::path::Path;
use std::sync::Arc;

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationMode {
    #[default]
    Auto,
    Userns,
    Chroot,
    /// The container's own `/` (kiln's image; see `in_place`).
    InPlace,
}

/// What in-place mode needs to know.
#[derive(Debug, Clone, Default)]
pub struct InPlaceOptions {
    /// Use in-place mode outside kiln's image.
    pub force: bool,
    /// Paths in-place mode keeps (kiln's state, /var/run, ignored paths);
    /// kiln's own directory and the mount points are added.
    pub keep: Vec<String>,
}

fn in_place(options: &InPlaceOptions) -> Result<Isolation, SandboxError> {
    let mut keep = options.keep.clone();
    match kiln_image_home() {
        Some(home) => keep.push(home.to_string_lossy().into_owned()),
        None => {
            if let Ok(exe) = std::env::current_exe() {
                keep.push(exe.to_string_lossy().into_owned());
            }
        }
    }
    let executor = InPlaceExecutor::new(keep)?;
    tracing::info!(
        "isolation: in-place: this container's own / is the build root (kept: {})",
        executor.fixed.keep.join(", ")
    );
    let root = RootKind::Fixed(executor.fixed.clone());
    Ok(Isolation::new(Arc::new(executor), root))
}

/// The executor for `mode` here; `work` is a scratch directory for the
/// probe. Overlay in namespaces where mounts work; else, as real root,
/// in-place in kiln's image and chroot elsewhere; or a private copy inside
/// a user namespace.
pub fn detect(
    mode: IsolationMode,
    work: &Path,
    options: &InPlaceOptions,
) -> Result<Isolation, SandboxError> {
    let in_userns = in_user_namespace();
    let root = sys::geteuid() == 0;
    if mode == IsolationMode::InPlace {
        if !root || in_userns {
            return Err(SandboxError::Unavailable(
                "--isolation in-place needs kiln to run as root".into(),
            ));
        }
        if kiln_image_home().is_none() && !options.force {
            return Err(SandboxError::Unavailable(
                "--isolation in-place replaces this container's own file system with the image being built; it is meant for kiln's image (see docs/usage.md): pass --force to use it here anyway".into(),
            ));
        }
        return in_place(options);
    }
    if mode == IsolationMode::Chroot {
        if !root || in_userns {
            return Err(SandboxError::Unavailable(
                "--isolation chroot needs kiln to run as root".into(),
            ));
        }
        tracing::info!("isolation: chroot (asked for)");
        return Ok(Isolation::new(
            Arc::new(DirectoryExecutor::chroot(ChrootBecause::Asked)),
            RootKind::Directory,
        ));
    }
    match probe_mounts(&work.join("probe"), in_userns) {
        Ok(()) => {
            tracing::info!(
                "isolation: {}namespaces with an overlay root (snapshots read only what changed)",
                if in_userns { "user " } else { "" }
            );
            Ok(Isolation::new(
                Arc::new(OverlayExecutor {
                    userxattr: in_userns,
                }),
                RootKind::Stacked,
            ))
        }
        Err(why) if mode == IsolationMode::Auto && root && !in_userns => {
            if kiln_image_home().is_some() {
                tracing::info!(
                    "namespaces or mounts are not permitted here ({why}); in kiln's image"
                );
                return in_place(options);
            }
            tracing::info!(
                "isolation: chroot (namespaces or mounts are not permitted here: {why})"
            );
            Ok(Isolation::new(
                Arc::new(DirectoryExecutor::chroot(ChrootBecause::MountsBlocked)),
                RootKind::Directory,
            ))
        }
        Err(why) if in_userns => {
            tracing::warn!("isolation: user namespaces without overlayfs ({why}); steps run in a private copy and are diffed");
            Ok(Isolation::new(
                Arc::new(DirectoryExecutor::private_copy()),
                RootKind::Directory,
            ))
        }
        Err(why) => Err(SandboxError::Unavailable(format!(
            "namespaces are not available here: {why}"
        ))),
    }
}
