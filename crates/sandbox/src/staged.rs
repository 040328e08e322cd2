//! `RUN --mount` where nothing can be mounted (chroot and in-place modes):
//! each source is copied to its target in the root before the step, a
//! writable one (a cache) copied back after it, and every path the mounts
//! made is removed again. The targets never reach a snapshot (the engine
//! ignores them).

use crate::spec::{MountSource, StepMount};
use crate::SandboxError;
use kiln_layer::in_root::{fd_path, RootDir};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What staging made: each mount's target with the parents made for it,
/// and the writable sources to copy back (image paths: the step may have
/// changed what they resolve to, so they are resolved again at the end).
pub(crate) struct Staged {
    root: PathBuf,
    created: Vec<(String, Vec<String>)>,
    write_back: Vec<(String, PathBuf)>,
}

/// An image path inside the root, to change: its parent directory held
/// open (reached inside the root, links resolved as the step sees them)
/// and a path through that descriptor, so that whatever a process the
/// step left behind does to the folders above, the path stays there.
struct Held {
    _parent: OwnedFd,
    /// `/proc/self/fd/N/name`.
    path: PathBuf,
    /// Where it is in the image, links resolved: `/a/b/name`.
    image_path: String,
}

fn held(root: &RootDir, path: &str, make_parents: bool) -> std::io::Result<Held> {
    held_at(root, root.resolve_path(path, false)?, make_parents)
}

/// [`held`] of a path already resolved (root-relative).
fn held_at(root: &RootDir, resolved: String, make_parents: bool) -> std::io::Result<Held> {
    let (parent, name) = resolved.rsplit_once('/').unwrap_or(("", &resolved));
    if name.is_empty() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    let parent_fd = if make_parents {
        root.make_dirs(parent)?
    } else {
        root.open_path(parent, true, libc::O_DIRECTORY)?
    };
    Ok(Held {
        path: fd_path(&parent_fd).join(name),
        _parent: parent_fd,
        image_path: format!("/{resolved}"),
    })
}

/// The parents of `resolved` (root-relative, links resolved) the root
/// lacks, as image paths, deepest first.
fn missing_parents(root: &RootDir, resolved: &str) -> Vec<String> {
    let mut parents = Vec::new();
    let mut cur = resolved;
    while let Some((parent, _)) = cur.rsplit_once('/') {
        match root.open_path(parent, false, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => parents.push(format!("/{parent}")),
            _ => break,
        }
        cur = parent;
    }
    parents
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
    let root_dir = RootDir::open(root).map_err(io(format!("opening {}", root.display())))?;
    for m in mounts {
        let what = || format!("mount target {}", m.target);
        // As the step will see it: symlinks on the way (the image's, or an
        // earlier step's) resolve inside the root, never to the host.
        let resolved = root_dir
            .resolve_path(&m.target, false)
            .map_err(io(what()))?;
        // Parents made only for the mount go again if the step left them
        // empty (as BuildKit's stubs do), deepest first.
        let parents = missing_parents(&root_dir, &resolved);
        let target = held_at(&root_dir, resolved, true).map_err(io(what()))?;
        let existed = std::fs::symlink_metadata(&target.path).is_ok();
        if existed {
            remove(&target.path).map_err(io(what()))?;
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
                copy_in(path, &target.path).map_err(io(format!("staging {}", m.target)))?;
                if *writable {
                    staged
                        .write_back
                        .push((target.image_path.clone(), path.clone()));
                }
            }
            MountSource::Tmpfs { .. } => {
                std::fs::create_dir(&target.path).map_err(io(what()))?;
            }
        }
        staged.created.push((target.image_path, parents));
    }
    Ok(staged)
}

/// The step may have removed what staging made, or a folder above it.
fn gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

impl Staged {
    /// Copy writable mounts back to their sources; remove what staging made.
    pub fn finish(self) -> Result<(), SandboxError> {
        let root =
            RootDir::open(&self.root).map_err(io(format!("opening {}", self.root.display())))?;
        for (target, source) in &self.write_back {
            let target =
                held(&root, target, false).map_err(io(format!("mount target {target}")))?;
            replace_with_copy(&target.path, source)
                .map_err(io(format!("updating {}", source.display())))?;
        }
        for (target, parents) in self.created.iter().rev() {
            match held(&root, target, false) {
                Ok(t) => remove(&t.path).map_err(io(format!("removing {target}")))?,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(SandboxError::io(format!("removing {target}"), e)),
            }
            for parent in parents {
                // Fails, as it should, where the step put something.
                if let Ok(p) = held(&root, parent, false) {
                    let _ = std::fs::remove_dir(&p.path);
                }
            }
        }
        Ok(())
    }
}
