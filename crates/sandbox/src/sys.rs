//! Small checked wrappers over the system calls the sandbox needs.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call with integer flags.
    check(unsafe { libc::unshare(flags) })
}

pub fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let s = cstr(source)?;
    let t = cpath(target)?;
    let f = fstype.map(cstr).transpose()?;
    let d = data.map(cstr).transpose()?;
    // SAFETY: all pointers are valid NUL-terminated strings or null.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |x| x.as_ptr()),
            flags,
            d.as_ref()
                .map_or(std::ptr::null(), |x| x.as_ptr() as *const libc::c_void),
        )
    })
}

pub fn chroot(path: &Path) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: valid path string.
    check(unsafe { libc::chroot(p.as_ptr()) })
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length of a valid buffer.
    check(unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) })
}

pub fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the group list outlives the call.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
    // SAFETY: plain system calls.
    check(unsafe { libc::setgid(gid) })?;
    check(unsafe { libc::setuid(uid) })
}

pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the helper is single-threaded when it forks.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

/// Wait for `pid`; its exit code (128 + signal when killed).
pub fn wait(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status points to a valid int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    })
}

/// Replace this process with `argv`, `env`; only returns on failure.
pub fn exec(path: &str, argv: &[String], env: &[String]) -> io::Error {
    let Ok(p) = cstr(path) else {
        return io::Error::new(io::ErrorKind::InvalidInput, "NUL in path");
    };
    let args: Vec<CString> = argv.iter().filter_map(|a| cstr(a).ok()).collect();
    let envs: Vec<CString> = env.iter().filter_map(|a| cstr(a).ok()).collect();
    let mut argp: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envs.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv/envp are null-terminated arrays of valid strings.
    unsafe { libc::execve(p.as_ptr(), argp.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

pub fn geteuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() }
}

pub fn getegid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::getegid() }
}

/// Put this process in its own process group (so the step's processes can
/// be killed together).
pub fn setsid() {
    // SAFETY: no arguments; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
}

pub fn kill_group(pgid: libc::pid_t) {
    // SAFETY: sending a signal has no memory effects.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Ask the kernel to kill this process when its parent dies.
pub fn die_with_parent() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}
