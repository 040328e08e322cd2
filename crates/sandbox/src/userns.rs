//! Entering a user namespace: an unprivileged kiln re-executes itself in a
//! new user namespace where it is root. IDs are mapped like rootless
//! podman/buildah: 0 is the caller, 1..N the caller's subordinate range
//! from /etc/subuid and /etc/subgid (set by the setuid helpers newuidmap
//! and newgidmap). Without a range only the caller's own ID is mapped, and
//! steps that give files to other IDs fail.

use crate::sys;
use crate::SandboxError;
use std::io::Read;
use std::os::unix::io::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Set in the re-executed kiln.
pub const IN_USERNS_ENV: &str = "KILN_IN_USERNS";

/// Whether this process is the re-executed kiln inside its user namespace.
pub fn in_user_namespace() -> bool {
    std::env::var_os(IN_USERNS_ENV).is_some()
}

/// A subordinate ID range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u64,
    pub count: u64,
}

/// The first range of `/etc/subuid`-style `text` for the user `name` or `id`.
pub fn parse_subid(text: &str, name: &str, id: u32) -> Option<IdRange> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        let start = f.next()?.trim().parse().ok()?;
        let count = f.next()?.trim().parse().ok()?;
        (who == name || who == id.to_string()).then_some(IdRange { start, count })
    })
}

fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_default()
}

/// Set for the re-executed kiln: the descriptors of its handshake pipes.
const HANDSHAKE_ENV: &str = "KILN_USERNS_FDS";

/// A pipe, both ends close-on-exec from the start (no window in which a
/// program started by another thread inherits them).
fn pipe() -> std::io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds points to two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// The re-executed kiln's side, first thing in `main` while the process
/// is still single-threaded: unshare the user namespace, tell the parent,
/// wait until it has written the ID maps. Returns false when this process
/// is not such a child.
pub fn finish_entering() -> Result<bool, SandboxError> {
    let Some(fds) = std::env::var(HANDSHAKE_ENV).ok() else {
        return Ok(false);
    };
    std::env::remove_var(HANDSHAKE_ENV);
    let (ready_w, go_r) = fds
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse::<RawFd>().ok()?, b.parse::<RawFd>().ok()?)))
        .ok_or("bad user namespace handshake")?;
    // SAFETY: the parent passed us these two descriptors.
    let mut ready = unsafe { std::fs::File::from_raw_fd(ready_w) };
    let mut go = unsafe { std::fs::File::from_raw_fd(go_r) };
    let ok = sys::unshare(libc::CLONE_NEWUSER).is_ok();
    let _ = std::io::Write::write_all(&mut ready, if ok { b"1" } else { b"0" });
    drop(ready);
    let mut byte = [0u8; 1];
    if go.read_exact(&mut byte).is_err() || byte[0] != b'1' || !ok {
        return Err("the user namespace could not be set up".into());
    }
    std::env::set_var(IN_USERNS_ENV, "1");
    Ok(true)
}

/// Re-execute kiln in a user namespace unless it is root already. `None`:
/// carry on (root, or already inside); `Some(code)`: the inner kiln
/// finished with `code` and this process should exit with it.
pub fn enter_user_namespace() -> Result<Option<i32>, SandboxError> {
    if sys::geteuid() == 0 || in_user_namespace() {
        return Ok(None);
    }
    let uid = sys::geteuid();
    let gid = sys::getegid();
    let name = user_name(uid);
    let subuid = std::fs::read_to_string("/etc/subuid")
        .ok()
        .and_then(|t| parse_subid(&t, &name, uid));
    let subgid = std::fs::read_to_string("/etc/subgid")
        .ok()
        .and_then(|t| parse_subid(&t, &name, uid));
    let helpers = which("newuidmap").is_some() && which("newgidmap").is_some();

    let (ready_r, ready_w) = pipe().map_err(|e| SandboxError::io("pipe", e))?;
    let (go_r, go_w) = pipe().map_err(|e| SandboxError::io("pipe", e))?;
    let mut command = crate::own_binary::command()?;
    command
        .args(std::env::args_os().skip(1))
        .env(HANDSHAKE_ENV, format!("{ready_w},{go_r}"));
    // SAFETY: between fork and exec the closure only calls fcntl, which is
    // async-signal-safe: the child's two ends, and only they, stay open
    // across its exec.
    unsafe {
        command.pre_exec(move || {
            for fd in [ready_w, go_r] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let spawned = command.spawn();
    // SAFETY: closing the child's ends, which we own here.
    unsafe {
        libc::close(ready_w);
        libc::close(go_r);
    }
    // SAFETY: ready_r and go_w are ours; File closes them on drop.
    let mut ready = unsafe { std::fs::File::from_raw_fd(ready_r) };
    let mut go = unsafe { std::fs::File::from_raw_fd(go_w) };
    let mut child =
        spawned.map_err(|e| SandboxError::io("starting kiln in a user namespace", e))?;
    let mut byte = [0u8; 1];
    let unshared = ready.read_exact(&mut byte).is_ok() && byte[0] == b'1';
    let mapped = if !unshared {
        Err(
            "user namespaces are not available here (unshare(CLONE_NEWUSER) failed); \
             run kiln as root (it then uses chroot where namespaces are blocked)"
                .into(),
        )
    } else {
        write_maps(child.id(), uid, gid, subuid, subgid, helpers)
    };
    let signal: &[u8] = if mapped.is_ok() { b"1" } else { b"0" };
    let _ = std::io::Write::write_all(&mut go, signal);
    drop(go);
    let status = child
        .wait()
        .map_err(|e| SandboxError::io("waiting for kiln in the user namespace", e))?;
    mapped?;
    Ok(Some(status.code().unwrap_or(1)))
}

fn write_maps(
    pid: u32,
    uid: u32,
    gid: u32,
    subuid: Option<IdRange>,
    subgid: Option<IdRange>,
    helpers: bool,
) -> Result<(), SandboxError> {
    match (subuid, subgid, helpers) {
        (Some(u), Some(g), true) => {
            run_map("newuidmap", pid, uid, u)?;
            run_map("newgidmap", pid, gid, g)?;
            tracing::debug!(
                "user namespace: 0 -> {uid}, 1..{} -> {}..; groups likewise",
                u.count,
                u.start
            );
            Ok(())
        }
        (u, g, helpers) => {
            let why = if !helpers {
                "newuidmap/newgidmap are not installed (Debian package uidmap)"
            } else if u.is_none() {
                "this user has no range in /etc/subuid"
            } else if g.is_none() {
                "this user has no range in /etc/subgid"
            } else {
                "no subordinate ranges"
            };
            tracing::warn!(
                "{why}: only your own user is mapped (as root); steps that give files to other users or groups will fail"
            );
            std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
                .map_err(|e| SandboxError::io("user namespace setgroups", e))?;
            std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1\n"))
                .map_err(|e| SandboxError::io("user namespace uid_map", e))?;
            std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1\n"))
                .map_err(|e| SandboxError::io("user namespace gid_map", e))?;
            Ok(())
        }
    }
}

fn run_map(tool: &str, pid: u32, own: u32, range: IdRange) -> Result<(), SandboxError> {
    let out = Command::new(tool)
        .arg(pid.to_string())
        .args(["0", &own.to_string(), "1"])
        .args(["1", &range.start.to_string(), &range.count.to_string()])
        .output()
        .map_err(|e| SandboxError::io(format!("running {tool}"), e))?;
    if !out.status.success() {
        return Err(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines() {
        let t = "alice:100000:65536\n1001:200000:1000\n";
        assert_eq!(
            parse_subid(t, "alice", 1000),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subid(t, "bob", 1001),
            Some(IdRange {
                start: 200000,
                count: 1000
            })
        );
        assert_eq!(parse_subid(t, "carol", 7), None);
    }
}
