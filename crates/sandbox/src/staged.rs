//! `RUN --mount` where nothing can be mounted (chroot and in-place modes):
//! each source is copied to its target in the root before the step, a
//! writable one (a cache) copied back after it, and every path the mounts
//! made is removed again. The targets never reach a snapshot (the engine
//! ignores them).

use crate::spec::{MountSource, StepMount};
use crate::SandboxError;
use std::path::{Path, PathBuf};

/// What staging made: each mount's target with the parents made for it,
/// and the writable sources to copy back (image paths: the step may have changed
/// what they resolve to, so they are resolved again at the end).
pub(crate) struct Staged {
    root: PathBuf,
    created: Vec<(String, Vec<String>)>,
    write_back: Vec<(String, PathBuf)>,
}

/// Image path `path` inside `root`, a final symlink kept.
fn in_root(root: &Path, path: &str) -> Result<PathBuf, SandboxError> {
    kiln_layer::apply::path_in_root(root, path, false)
        .map_err(|e| SandboxError::Unavailable(format!("mount target {path}: {e}")))
}

/// `path` of the host as an image path under `root` (for what staging made).
fn image_path(root: &Path, path: &Path) -> String {
    format!("/{}", path.strip_prefix(root).unwrap_or(path).display())
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SandboxError {
    move |e| SandboxError::io(what, e)
}

/// Copy `src` (file, symlink or directory) to `dst`, modes kept. Also the
/// engine's throwaway copy for a writable bind mount.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(src)?;
    if md.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
    } else if md.is_dir() {
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        // After the children: a read-only directory must still be filled.
        std::fs::set_permissions(dst, md.permissions())
    } else {
        std::fs::copy(src, dst).map(|_| ())
    }
}

/// Copy a mount's source in; a shared cache another build swaps meanwhile
/// (see [`replace_with_copy`]) is copied again.
fn copy_in(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match copy_tree(src, dst) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => {
                tries += 1;
                remove(dst)?;
            }
            r => return r,
        }
    }
}

/// Make `dst` a copy of `src` in one step for anyone reading `dst`: the
/// copy is made beside it and swapped in (`RENAME_EXCHANGE`), so builds
/// sharing a cache (`sharing=shared`) never see or make half of one.
fn replace_with_copy(src: &Path, dst: &Path) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = dst.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".new-{}-{n}", std::process::id()));
    let new = dst.with_file_name(name);
    let _ = remove(&new);
    copy_tree(src, &new)?;
    let exchanged = exchange(&new, dst);
    // After a swap `new` holds the old copy; after a failure, the new one.
    let result = match exchanged {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => std::fs::rename(&new, dst),
        r => r,
    };
    let _ = remove(&new);
    result
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

pub(crate) fn stage(root: &Path, mounts: &[StepMount]) -> Result<Staged, SandboxError> {
    let mut staged = Staged {
        root: root.to_path_buf(),
        created: Vec::new(),
        write_back: Vec::new(),
    };
    for m in mounts {
        // As the step will see it: symlinks on the way (the image's, or an
        // earlier step's) resolve inside the root, never to the host.
        let target = in_root(root, &m.target)?;
        // Parents made only for the mount go again if the step left them
        // empty (as BuildKit's stubs do), deepest first.
        let mut parents = Vec::new();
        let mut cur = target.parent();
        while let Some(parent) = cur {
            if parent == root || std::fs::symlink_metadata(parent).is_ok() {
                break;
            }
            parents.push(image_path(root, parent));
            cur = parent.parent();
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("mount target {}", m.target)))?;
        }
        let existed = std::fs::symlink_metadata(&target).is_ok();
        if existed {
            remove(&target).map_err(io(format!("mount target {}", m.target)))?;
        }
        match &m.source {
            MountSource::Host { path, writable } => {
                use std::os::unix::fs::FileTypeExt;
                if std::fs::metadata(path).is_ok_and(|md| md.file_type().is_socket()) {
                    return Err(SandboxError::Unavailable(format!(
                        "RUN --mount at {}: a socket (an SSH agent) cannot be copied in; it needs a mount, which this mode cannot make: use user namespaces, or root where namespaces are permitted",
                        m.target
                    )));
                }
                copy_in(path, &target).map_err(io(format!("staging {}", m.target)))?;
                if *writable {
                    staged
                        .write_back
                        .push((image_path(root, &target), path.clone()));
                }
            }
            MountSource::Tmpfs { .. } => {
                std::fs::create_dir(&target).map_err(io(format!("mount target {}", m.target)))?;
            }
        }
        staged.created.push((image_path(root, &target), parents));
    }
    Ok(staged)
}

impl Staged {
    /// Copy writable mounts back to their sources; remove what staging made.
    pub fn finish(self) -> Result<(), SandboxError> {
        for (target, source) in &self.write_back {
            let target = in_root(&self.root, target)?;
            replace_with_copy(&target, source)
                .map_err(io(format!("updating {}", source.display())))?;
        }
        for (target, parents) in self.created.iter().rev() {
            let path = in_root(&self.root, target)?;
            remove(&path).map_err(io(format!("removing {}", path.display())))?;
            for parent in parents {
                // Fails, as it should, where the step put something.
                let _ = std::fs::remove_dir(in_root(&self.root, parent)?);
            }
        }
        Ok(())
    }
}
