//! Descriptors a step must never inherit (the runc CVE-2024-21626 class):
//! whatever kiln's own parent left open (a CI runner's, a shell's
//! `exec 7>file`, a wrapper's) would otherwise reach every RUN, writable,
//! pointing outside the step's root.

/// Marks every descriptor from 3 up close-on-exec. Called first in
/// `main`, before kiln opens anything of its own: kiln's own descriptors
/// are close-on-exec already, and those it hands a child are opened for
/// that child.
pub fn close_inherited_on_exec() {
    // SAFETY: close_range only changes flags of this process's descriptors.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return;
    }
    // Kernels before 5.11: each open descriptor in turn.
    for fd in open_descriptors() {
        // SAFETY: F_GETFD/F_SETFD on a descriptor number; a closed one fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Closes every descriptor from 3 up: the step's process starts with its
/// standard input, output and error only, as runc's does.
pub fn close_all_but_stdio() {
    // SAFETY: closing descriptors of this process, which is about to exec.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } == 0 {
        return;
    }
    // Kernels before 5.9 (and no /proc inside a chroot): every number up
    // to the limit on open descriptors.
    // SAFETY: sysconf has no preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max > 3 {
        max.min(1 << 20) as i32
    } else {
        1024
    };
    for fd in 3..max {
        // SAFETY: closing a descriptor number; a closed one fails harmlessly.
        unsafe { libc::close(fd) };
    }
}

fn open_descriptors() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn cloexec(fd: i32) -> bool {
        // SAFETY: F_GETFD on an open descriptor.
        unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
    }

    #[test]
    fn inherited_descriptors_become_close_on_exec() {
        let file = tempfile::tempfile().unwrap();
        // SAFETY: a plain dup without O_CLOEXEC, as a parent leaves one.
        let inherited = unsafe { libc::dup(file.as_raw_fd()) };
        assert!(inherited > 2 && !cloexec(inherited));
        close_inherited_on_exec();
        assert!(cloexec(inherited));
        // SAFETY: closing the descriptor this test made.
        unsafe { libc::close(inherited) };
    }
}
