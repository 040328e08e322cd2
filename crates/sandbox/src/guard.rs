//! kiln's own files in its image, where in-place steps run as root in the
//! same container and could replace them (osscontainertools/kaniko #586,
//! #587). Before any step kiln keeps what they are: the running binary
//! through a descriptor on it (the kernel refuses writes to a running
//! program, and a replaced one lives on while held), other files as
//! sealed in-memory copies (no step can write to them, not even through
//! /proc/PID/fd), links as their targets. After each step, whatever it
//! replaced, changed or removed is put back; steps themselves always run
//! the real kiln (`own_binary`).

use crate::SandboxError;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What changes when a file is replaced, moved or written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    size: u64,
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(FileStamp {
        ino: m.ino(),
        size: m.size(),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// What a guarded path was before any step.
#[derive(Debug)]
enum Original {
    File { content: File, mode: u32 },
    Link(PathBuf),
}

#[derive(Debug)]
struct GuardedFile {
    path: PathBuf,
    stamp: Option<FileStamp>,
    original: Original,
}

/// kiln's files, as they were before the first step.
#[derive(Debug, Default)]
pub(crate) struct Guarded {
    files: Vec<GuardedFile>,
}

/// A sealed in-memory copy of `src`: its content can no longer change.
fn sealed_copy(src: &Path) -> std::io::Result<File> {
    let name = c"kiln-own-file";
    // SAFETY: `name` is NUL-terminated; the result is a new descriptor.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just made, owned by nobody else.
    let mut copy = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::copy(&mut File::open(src)?, &mut copy)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(copy)
}

impl Guarded {
    /// Keep `paths` (kiln's binary first among them, when `running` is it).
    pub(crate) fn keep(paths: &[PathBuf], running: Option<&Path>) -> Result<Guarded, SandboxError> {
        let mut files = Vec::new();
        for path in paths {
            let Ok(md) = std::fs::symlink_metadata(path) else {
                continue;
            };
            let err =
                |e| SandboxError::io(format!("keeping kiln's own file {}", path.display()), e);
            let original = if md.file_type().is_symlink() {
                Original::Link(std::fs::read_link(path).map_err(err)?)
            } else if md.is_file() {
                // The running program cannot be written while it runs:
                // holding it open is enough, and costs no memory.
                let content = if running.is_some_and(|r| r == path) {
                    File::open("/proc/self/exe").or_else(|_| File::open(path))
                } else {
                    sealed_copy(path)
                };
                Original::File {
                    content: content.map_err(err)?,
                    mode: md.mode() & 0o7777,
                }
            } else {
                continue;
            };
            files.push(GuardedFile {
                path: path.clone(),
                stamp: stamp(path),
                original,
            });
        }
        Ok(Guarded { files })
    }

    /// Put back every kept file a step replaced, changed or removed;
    /// returns their paths.
    pub(crate) fn put_back(&mut self) -> Result<Vec<PathBuf>, SandboxError> {
        let mut put_back = Vec::new();
        for file in &mut self.files {
            if stamp(&file.path) == file.stamp {
                continue;
            }
            restore(file).map_err(|e| {
                SandboxError::io(
                    format!("putting back kiln's own file {}", file.path.display()),
                    e,
                )
            })?;
            file.stamp = stamp(&file.path);
            put_back.push(file.path.clone());
        }
        Ok(put_back)
    }
}

/// Make every directory above `path` (up to `/`) a real directory again:
/// a step may have put a link or a file where one was.
fn real_parents(path: &Path) -> std::io::Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() || parent == Path::new("/") {
        return Ok(());
    }
    real_parents(parent)?;
    match std::fs::symlink_metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            std::fs::remove_file(parent)?;
            std::fs::create_dir(parent)
        }
        Err(_) => std::fs::create_dir(parent),
    }
}

/// The original, written beside the path and renamed over it.
fn restore(file: &mut GuardedFile) -> std::io::Result<()> {
    real_parents(&file.path)?;
    let mut name = file.path.file_name().unwrap_or_default().to_os_string();
    name.push(".kiln-put-back");
    let aside = file.path.with_file_name(name);
    remove_any(&aside)?;
    match &mut file.original {
        Original::Link(target) => std::os::unix::fs::symlink(target, &aside)?,
        Original::File { content, mode } => {
            content.seek(SeekFrom::Start(0))?;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&aside)?;
            std::io::copy(content, &mut out)?;
            out.set_permissions(std::fs::Permissions::from_mode(*mode))?;
        }
    }
    // A directory the step put there is not replaced by rename.
    if std::fs::symlink_metadata(&file.path).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(&file.path)?;
    }
    std::fs::rename(&aside, &file.path)
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_changed_and_removed_files_are_put_back() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("kiln/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("kiln"), "real kiln").unwrap();
        std::fs::write(bin.join("busybox"), "real busybox").unwrap();
        std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
        let paths: Vec<PathBuf> = ["kiln", "busybox", "sh"]
            .iter()
            .map(|n| bin.join(n))
            .collect();
        let mut kept = Guarded::keep(&paths, None).unwrap();
        assert!(kept.put_back().unwrap().is_empty());

        // Replaced, written in place, removed with its folder made a link.
        std::fs::write(bin.join("new"), "fake").unwrap();
        std::fs::rename(bin.join("new"), bin.join("kiln")).unwrap();
        std::fs::write(bin.join("busybox"), "fake busybox, longer").unwrap();
        std::fs::remove_file(bin.join("sh")).unwrap();
        std::fs::create_dir(bin.join("sh")).unwrap();
        assert_eq!(kept.put_back().unwrap().len(), 3);
        assert_eq!(
            std::fs::read_to_string(bin.join("kiln")).unwrap(),
            "real kiln"
        );
        assert_eq!(
            std::fs::read_to_string(bin.join("busybox")).unwrap(),
            "real busybox"
        );
        let mode = std::fs::metadata(bin.join("busybox")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(
            std::fs::read_link(bin.join("sh")).unwrap(),
            Path::new("busybox")
        );

        // The whole folder replaced by a link elsewhere.
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::remove_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &bin).unwrap();
        assert_eq!(kept.put_back().unwrap().len(), 3);
        assert!(std::fs::symlink_metadata(&bin).unwrap().is_dir());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_to_string(bin.join("kiln")).unwrap(),
            "real kiln"
        );
    }

    #[test]
    fn the_kept_copies_cannot_be_written() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "original").unwrap();
        let copy = sealed_copy(&f).unwrap();
        // Even reopened for writing (as a step could through /proc).
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy));
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut w| std::io::Write::write_all(&mut w, b"changed"));
        assert!(e.is_err());
    }
}
