//! Where the file system puts the directories kiln fills: ext4 without a
//! journal (this project's machines, and many VM images) will not reuse an
//! inode freed in the last 60 s (360 s while its table block is dirty),
//! and each new file scans past every such inode in its directory's block
//! group (`find_inode_bit` -> `recently_deleted`): right after a cleanup
//! freed thousands of files nearby, every create costs a millisecond of
//! kernel time. A directory marked "top" (`chattr +T`, `FS_TOPDIR_FL`) has
//! its new subdirectories spread by the Orlov allocator to groups with
//! room, away from that congestion: in one measurement here, 2,880 files
//! took 0.18 s instead of 1.87 s (docs/benchmarks.md).

use std::os::fd::AsRawFd;
use std::path::Path;

/// ext4's `FS_TOPDIR_FL` (linux/fs.h).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` so that its new subdirectories are spread across the file
/// system's block groups. Best effort: file systems without the flag
/// (tmpfs, overlayfs, xfs) are left as they are.
pub fn spread_subdirectories(dir: &Path) {
    let Ok(d) = std::fs::File::open(dir) else {
        return;
    };
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one int through a
    // pointer to a live local, on a descriptor we hold.
    unsafe {
        if libc::ioctl(d.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return;
        }
        if flags & FS_TOPDIR_FL == 0 {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(d.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}

/// `create_dir_all(dir)`, then [`spread_subdirectories`] on it.
pub fn create_spread_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    spread_subdirectories(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(dir: &Path) -> Option<libc::c_int> {
        let d = std::fs::File::open(dir).ok()?;
        let mut flags: libc::c_int = 0;
        // SAFETY: as in spread_subdirectories.
        let got = unsafe { libc::ioctl(d.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
        (got == 0).then_some(flags)
    }

    #[test]
    fn marking_is_best_effort_and_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("store");
        create_spread_dir(&dir).unwrap();
        spread_subdirectories(&dir);
        spread_subdirectories(&d.path().join("missing"));
        assert!(dir.is_dir());
        // Where the file system keeps such flags (ext4), it holds this one.
        if let Some(f) = flags(&dir) {
            if f & 0x8_0000 != 0 {
                // FS_EXTENT_FL: ext4.
                assert_ne!(f & FS_TOPDIR_FL, 0, "{f:#x}");
            }
        }
    }
}
