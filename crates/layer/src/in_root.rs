//! Opening paths inside a root that nothing may lead out of: the stage's
//! folder a step runs in, where the step's own symlinks (absolute, or
//! climbing with `..`) must resolve as the step sees them, never to the
//! host's file of that name.
//!
//! Where the kernel has `openat2` (Linux 5.6), it resolves the whole path
//! in one call with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: no window in
//! which a link swapped in by another process is followed. Elsewhere the
//! path is resolved by [`crate::apply::resolve_in_root`] and then walked one
//! component at a time with `O_NOFOLLOW`, so a link swapped in meanwhile
//! fails the walk instead of being followed. Every descriptor is
//! close-on-exec; callers use them as `*at` directories or, for mount(2),
//! through [`fd_path`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

/// A root folder, held open: paths are resolved from it, never from `/`.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
}

/// What a new path at the end of [`RootDir::make`] is, when missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewNode {
    Dir,
    File,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `openat` with O_CLOEXEC always; the descriptor is ours.
fn openat(dir: RawFd, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: `c` is NUL-terminated; the result is a new descriptor or -1.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const UNKNOWN: u8 = 0;
const HAS_OPENAT2: u8 = 1;
const NO_OPENAT2: u8 = 2;
static OPENAT2: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cfg(test)]
thread_local! {
    /// Tests of the walk: this thread resolves as a kernel without openat2.
    static WALK_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `openat2(dir, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`;
/// `None` where the kernel (or a seccomp filter) does not have it.
fn openat2_in_root(dir: RawFd, rel: &str, flags: libc::c_int) -> Option<io::Result<OwnedFd>> {
    if OPENAT2.load(Ordering::Relaxed) == NO_OPENAT2 {
        return None;
    }
    #[cfg(test)]
    if WALK_ONLY.with(|w| w.get()) {
        return None;
    }
    let c = match cstr(rel) {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    // SAFETY: open_how is plain integers; zero is "no flags".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // The kernel asks for a retry when a rename raced the lookup.
    for _ in 0..16 {
        // SAFETY: `c` is NUL-terminated and `how` is a valid open_how of
        // the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            OPENAT2.store(HAS_OPENAT2, Ordering::Relaxed);
            // SAFETY: a descriptor just opened, owned by nobody else.
            return Some(Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => continue,
            // Not this kernel's (or seccomp refuses it): the walk instead.
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::E2BIG)
                if OPENAT2.load(Ordering::Relaxed) != HAS_OPENAT2 =>
            {
                OPENAT2.store(NO_OPENAT2, Ordering::Relaxed);
                return None;
            }
            _ => return Some(Err(e)),
        }
    }
    Some(Err(io::Error::from_raw_os_error(libc::EAGAIN)))
}

/// Whether this kernel resolves with `openat2` (known after the first use).
#[cfg(test)]
fn uses_openat2() -> bool {
    OPENAT2.load(Ordering::Relaxed) == HAS_OPENAT2
}

/// A path for mount(2) and other path-only calls that reaches exactly the
/// file `fd` holds (the kernel follows `/proc/self/fd/N` to it, not to
/// whatever is at its name now).
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn relative(path: &str) -> &str {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

fn split_last(rel: &str) -> (&str, &str) {
    match rel.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", rel),
    }
}

impl RootDir {
    pub fn open(root: &Path) -> io::Result<RootDir> {
        let c = cstr(&root.to_string_lossy())?;
        // SAFETY: `c` is NUL-terminated.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: a descriptor just opened, owned by nobody else.
        Ok(RootDir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The target of `rel` if it is a symlink (for the walk's resolver).
    fn readlink(&self, rel: &str) -> Option<String> {
        let c = cstr(rel).ok()?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: buf has the length passed; readlinkat writes at most that.
        let n = unsafe {
            libc::readlinkat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
    }

    /// `path` with every symlink on the way resolved inside the root (by
    /// kiln's resolver: for naming what a step will reach, and for paths
    /// not made yet); root-relative, "" for the root itself.
    pub fn resolve_path(&self, path: &str, follow_last: bool) -> io::Result<String> {
        self.resolve(relative(path), follow_last)
    }

    fn resolve(&self, path: &str, follow_last: bool) -> io::Result<String> {
        crate::apply::resolve_in_root(path, follow_last, |p| self.readlink(p))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// Open `path` (an image path) as the step would reach it: `flags`
    /// plus O_PATH; with `follow_last` false a final symlink is opened
    /// itself.
    pub fn open_path(
        &self,
        path: &str,
        follow_last: bool,
        flags: libc::c_int,
    ) -> io::Result<OwnedFd> {
        let mut flags = flags | libc::O_PATH;
        if !follow_last {
            flags |= libc::O_NOFOLLOW;
        }
        let rel = relative(path);
        if let Some(r) = openat2_in_root(self.fd.as_raw_fd(), rel, flags) {
            return r;
        }
        let resolved = self.resolve(rel, follow_last)?;
        self.walk(&resolved, flags)
    }

    /// Open a root-relative path whose links are all resolved, one
    /// component at a time, following none (a link swapped in fails).
    fn walk(&self, resolved: &str, last_flags: libc::c_int) -> io::Result<OwnedFd> {
        let mut dir = openat(
            self.fd.as_raw_fd(),
            ".",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        let parts: Vec<&str> = resolved.split('/').filter(|c| !c.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let flags = if i + 1 == parts.len() {
                last_flags | libc::O_NOFOLLOW
            } else {
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW
            };
            dir = openat(dir.as_raw_fd(), part, flags, 0)?;
        }
        Ok(dir)
    }

    /// The directory `path`, made (0755, each missing component in turn,
    /// never through a link) where missing.
    pub fn make_dirs(&self, path: &str) -> io::Result<OwnedFd> {
        match self.open_path(path, true, libc::O_DIRECTORY) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => return r,
        }
        let resolved = self.resolve(relative(path), true)?;
        let mut dir = openat(
            self.fd.as_raw_fd(),
            ".",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        for part in resolved.split('/').filter(|c| !c.is_empty()) {
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            dir = match openat(dir.as_raw_fd(), part, flags, 0) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c = cstr(part)?;
                    // SAFETY: `c` is NUL-terminated; `dir` is open.
                    match check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) }) {
                        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                        _ => openat(dir.as_raw_fd(), part, flags, 0)?,
                    }
                }
                r => r?,
            };
        }
        Ok(dir)
    }

    /// `path` as the step reaches it (links followed inside the root),
    /// made as an empty file or directory where missing, its parents too.
    /// For mount targets: the result goes to mount(2) through [`fd_path`].
    pub fn make(&self, path: &str, node: NewNode) -> io::Result<OwnedFd> {
        match self.open_path(path, true, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => return r,
        }
        // Where a dangling link points, resolved inside the root.
        let resolved = self.resolve(relative(path), true)?;
        let (parent, name) = split_last(&resolved);
        if name.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let dir = self.make_dirs(parent)?;
        let c = cstr(name)?;
        let made = match node {
            // SAFETY: `c` is NUL-terminated; `dir` is open.
            NewNode::Dir => check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) }),
            NewNode::File => openat(
                dir.as_raw_fd(),
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o644,
            )
            .map(|_| 0),
        };
        match made {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
            _ => {}
        }
        openat(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)
    }
}

/// Open `name` in directory `dir` (reached through a [`RootDir`]) with
/// `flags`, never through a link: for files kiln puts into a step's root.
pub fn open_in(
    dir: &OwnedFd,
    name: &str,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    openat(dir.as_raw_fd(), name, flags | libc::O_NOFOLLOW, mode)
}

/// The type bits (`S_IFMT`) of `name` in `dir`, a final link not followed.
pub fn file_type_in(dir: &OwnedFd, name: &str) -> io::Result<libc::mode_t> {
    let c = cstr(name)?;
    // SAFETY: `st` is written by fstatat; `c` is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st.st_mode & libc::S_IFMT)
}

/// Remove the file (not directory) `name` from `dir`.
pub fn unlink_in(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: `c` is NUL-terminated; `dir` is open.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map(|_| ())
}

/// A character device `name` in `dir` (`mknodat`).
pub fn mknod_char_in(dir: &OwnedFd, name: &str, major: u32, minor: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: `c` is NUL-terminated; `dir` is open.
    check(unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    /// Both resolvers: the kernel's and the walk.
    fn each_resolver(f: impl Fn()) {
        f();
        WALK_ONLY.with(|w| w.set(true));
        f();
        WALK_ONLY.with(|w| w.set(false));
    }

    #[test]
    fn links_resolve_inside_the_root() {
        each_resolver(|| {
            let host = tempfile::tempdir().unwrap();
            let d = tempfile::tempdir().unwrap();
            let root = d.path().join("root");
            std::fs::create_dir_all(root.join("inside")).unwrap();
            symlink(host.path(), root.join("abs")).unwrap();
            symlink("../../../..", root.join("up")).unwrap();
            let r = RootDir::open(&root).unwrap();
            let root = root.canonicalize().unwrap();
            // Missing inside: an absolute link to the host is not followed out.
            assert!(r.open_path("/abs", true, 0).is_err());
            let up = r.open_path("up/inside", true, 0).unwrap();
            assert_eq!(real(&up), root.join("inside"));
            let made = r.make("/abs/cache", NewNode::Dir).unwrap();
            let host_name = host.path().strip_prefix("/").unwrap();
            assert_eq!(real(&made), root.join(host_name).join("cache"));
            let file = r.make("/up/etc/resolv.conf", NewNode::File).unwrap();
            assert_eq!(real(&file), root.join("etc/resolv.conf"));
            assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
            // A final link kept when asked.
            let link = r.open_path("/abs", false, 0).unwrap();
            assert_eq!(real(&link), root.join("abs"));
        });
    }

    #[test]
    fn dangling_links_are_made_inside_the_root() {
        each_resolver(|| {
            let host = tempfile::tempdir().unwrap();
            let d = tempfile::tempdir().unwrap();
            let root = d.path().to_path_buf();
            std::fs::create_dir(root.join("etc")).unwrap();
            let outside = host.path().join("resolv");
            symlink(&outside, root.join("etc/resolv.conf")).unwrap();
            let r = RootDir::open(&root).unwrap();
            let f = r.make("/etc/resolv.conf", NewNode::File).unwrap();
            let root = root.canonicalize().unwrap();
            let inside = root.join(outside.strip_prefix("/").unwrap());
            assert_eq!(real(&f), inside);
            assert!(!outside.exists());
        });
    }

    #[test]
    fn the_walk_refuses_a_link_it_did_not_resolve() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        symlink("/", d.path().join("link")).unwrap();
        let r = RootDir::open(d.path()).unwrap();
        // As if "link" had been a directory when resolved: the walk meets
        // the link and stops.
        let e = r.walk("link/etc", libc::O_PATH).unwrap_err();
        assert!(matches!(
            e.raw_os_error(),
            Some(libc::ELOOP) | Some(libc::ENOTDIR)
        ));
        assert!(r.walk("dir", libc::O_PATH).is_ok());
    }

    #[test]
    fn magic_links_are_refused_by_the_kernel() {
        let r = RootDir::open(Path::new("/")).unwrap();
        let e = r.open_path("/proc/self/root/etc", true, 0);
        if uses_openat2() {
            assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::ELOOP));
        } else {
            eprintln!("!!!!!!!! no openat2 on this kernel: magic links not checked !!!!!!!!");
        }
    }
}
