//! The helper process (`kiln __run SPEC`): sets up the step's namespaces
//! and root, becomes the step's user and execs its command. It runs alone
//! in its own process (single-threaded), so forking here is safe.
//! Its setup errors are text on purpose: each ends as one `kiln sandbox:`
//! line on the stderr of a process about to exit 125, which the parent
//! shows as the step's output; no caller ever matches on them.

use crate::spec::{RootSpec, RunSpec};
use crate::sys;
use kiln_layer::in_root::{fd_path, NewNode, RootDir};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Run the step described in the JSON file `spec_path`; returns the exit
/// code for the helper to exit with. Setup failures print one line to
/// stderr and return 125, as container runtimes do.
pub fn helper_main(spec_path: &Path) -> i32 {
    let spec: RunSpec = match std::fs::read(spec_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(s) => s,
        None => {
            eprintln!(
                "kiln sandbox: cannot read the step spec {}",
                spec_path.display()
            );
            return 125;
        }
    };
    match run(&spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln sandbox: {e}");
            125
        }
    }
}

fn run(spec: &RunSpec) -> Result<i32, String> {
    sys::die_with_parent();
    if let RootSpec::Chroot { root } = &spec.root {
        // chroot mode: no namespaces; the step gets a process group of its
        // own so that processes it leaves behind can be killed.
        let root = root.clone();
        let pid = sys::fork().map_err(|e| format!("fork: {e}"))?;
        if pid == 0 {
            sys::setsid();
            let e = enter_and_exec(spec, &root);
            eprintln!("kiln sandbox: {e}");
            std::process::exit(127);
        }
        let code = sys::wait(pid).map_err(|e| format!("wait: {e}"))?;
        sys::kill_group(pid);
        return Ok(code);
    }
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if spec.process.no_network {
        flags |= libc::CLONE_NEWNET;
    }
    sys::unshare(flags).map_err(|e| format!("unshare (mount, pid, ipc, uts namespaces): {e}"))?;
    // The first child is pid 1 of the new pid namespace: when it exits, the
    // kernel kills every process the step left behind.
    let pid = sys::fork().map_err(|e| format!("fork: {e}"))?;
    if pid == 0 {
        let code = match setup_namespaced(spec) {
            Ok(root) => {
                let e = enter_and_exec(spec, &root);
                eprintln!("kiln sandbox: {e}");
                127
            }
            Err(e) => {
                eprintln!("kiln sandbox: {e}");
                125
            }
        };
        std::process::exit(code);
    }
    sys::wait(pid).map_err(|e| format!("wait: {e}"))
}

/// Mounts of a namespaced step; returns the root to enter.
fn setup_namespaced(spec: &RunSpec) -> Result<PathBuf, String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    // Nothing we mount may propagate back to the host.
    sys::mount(
        "none",
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(|e| err("making / private", e))?;
    let (root, host_files) = match &spec.root {
        RootSpec::Overlay {
            lowers,
            upper,
            work,
            merged,
            userxattr,
            host_files,
        } => {
            let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
            let mut data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                upper.display(),
                work.display()
            );
            if *userxattr {
                data.push_str(",userxattr");
            }
            // volatile (Linux 5.10): the overlay's syncs are not passed to
            // the upper file system. Without it, the step's end synced the
            // whole disk's dirty data: the first RUN after a base's
            // extraction waited for all its files to be written out.
            // Kernels without the option refuse it; mounted without then.
            let volatile = format!("{data},volatile");
            sys::mount("overlay", merged, Some("overlay"), 0, Some(&volatile))
                .or_else(|_| sys::mount("overlay", merged, Some("overlay"), 0, Some(&data)))
                .map_err(|e| err("mounting the overlay root", e))?;
            (merged.clone(), host_files)
        }
        RootSpec::Chroot { .. } => return Err("a chroot root has no namespaces".into()),
        RootSpec::Namespaced { root, host_files } => {
            // A bind mount so that the root is a mount point of its own.
            sys::mount(
                &root.display().to_string(),
                root,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(|e| err("binding the root", e))?;
            (root.clone(), host_files)
        }
    };
    let _ = sys::sethostname(&spec.hostname);
    // Every mount target is opened inside the root (the image's links
    // resolve as the step will see them) and mounted on through its
    // descriptor: nothing the image holds can aim a mount at the host.
    let in_root = RootDir::open(&root).map_err(|e| err("opening the root", e))?;
    let proc_dir = target(&in_root, "/proc", NewNode::Dir)?;
    sys::mount(
        "proc",
        &fd_path(&proc_dir),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(|e| err("mounting /proc", e))?;
    if let Ok(sys_dir) = target(&in_root, "/sys", NewNode::Dir) {
        let _ = sys::mount(
            "/sys",
            &fd_path(&sys_dir),
            None,
            libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY,
            None,
        );
    }
    setup_dev(&in_root)?;
    for m in &spec.mounts {
        step_mount(&in_root, m)?;
    }
    for (host, name) in [
        (&host_files.resolv_conf, "/etc/resolv.conf"),
        (&host_files.hosts, "/etc/hosts"),
    ] {
        if let (Some(host), Ok(file)) = (host, target(&in_root, name, NewNode::File)) {
            let _ = sys::mount(
                &host.display().to_string(),
                &fd_path(&file),
                None,
                libc::MS_BIND,
                None,
            );
        }
    }
    Ok(root)
}

/// `path` inside the root, made (file or directory) where missing.
fn target(root: &RootDir, path: &str, node: NewNode) -> Result<OwnedFd, String> {
    root.make(path, node)
        .map_err(|e| format!("mount target {path}: {e}"))
}

/// A `RUN --mount` inside the root: the target made if missing (file or
/// directory, like its source), then a bind (read-only unless writable)
/// or a tmpfs mounted over it.
fn step_mount(root: &RootDir, m: &crate::spec::StepMount) -> Result<(), String> {
    use crate::spec::MountSource;
    let is_file = matches!(&m.source, MountSource::Host { path, .. } if !path.is_dir());
    let node = if is_file { NewNode::File } else { NewNode::Dir };
    let at = target(root, &m.target, node)?;
    match &m.source {
        MountSource::Host { path, writable } => {
            let src = path.display().to_string();
            sys::mount(
                &src,
                &fd_path(&at),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(|e| format!("mounting {} at {}: {e}", src, m.target))?;
            if !writable {
                // The bind itself, reached again through its path.
                let bound = target(root, &m.target, node)?;
                let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                sys::mount(&src, &fd_path(&bound), None, flags, None)
                    .map_err(|e| format!("read-only {}: {e}", m.target))?;
            }
        }
        MountSource::Tmpfs { size } => {
            let data = size.map(|s| format!("size={s}"));
            sys::mount(
                "tmpfs",
                &fd_path(&at),
                Some("tmpfs"),
                libc::MS_NOSUID,
                data.as_deref(),
            )
            .map_err(|e| format!("tmpfs at {}: {e}", m.target))?;
        }
    }
    Ok(())
}

/// A minimal /dev: tmpfs with the usual nodes bound from the host, pts,
/// shm and the standard links. Once the tmpfs is mounted, /dev is ours:
/// nothing of the image is in it.
fn setup_dev(root: &RootDir) -> Result<(), String> {
    let at = target(root, "/dev", NewNode::Dir)?;
    sys::mount(
        "tmpfs",
        &fd_path(&at),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(|e| format!("mounting /dev: {e}"))?;
    let mounted = target(root, "/dev", NewNode::Dir)?;
    let dev = fd_path(&mounted);
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        std::fs::write(&target, "").map_err(|e| format!("/dev/{name}: {e}"))?;
        sys::mount(&format!("/dev/{name}"), &target, None, libc::MS_BIND, None)
            .map_err(|e| format!("binding /dev/{name}: {e}"))?;
    }
    let pts = dev.join("pts");
    ensure_dir(&pts)?;
    if sys::mount(
        "devpts",
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .is_ok()
    {
        let _ = std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"));
    }
    let shm = dev.join("shm");
    ensure_dir(&shm)?;
    let _ = sys::mount(
        "shm",
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    );
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }
    Ok(())
}

fn ensure_dir(p: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", p.display())),
        Err(_) => std::fs::create_dir(p).map_err(|e| format!("creating {}: {e}", p.display())),
    }
}

/// chroot, chdir, drop to the step's user and exec. Returns only on error.
fn enter_and_exec(spec: &RunSpec, root: &Path) -> String {
    if let Err(e) = sys::chroot(root) {
        return format!("chroot {}: {e}", root.display());
    }
    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        &spec.process.cwd
    };
    if let Err(e) = std::env::set_current_dir(cwd) {
        return format!("working directory {cwd}: {e}");
    }
    if let Err(e) = sys::set_ids(spec.process.uid, spec.process.gid, &spec.process.groups) {
        return format!(
            "switching to user {}:{}: {e}",
            spec.process.uid, spec.process.gid
        );
    }
    // stdin is empty, as in docker build.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use std::os::unix::io::AsRawFd;
        // SAFETY: duplicating a valid descriptor onto stdin.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
    let Some(first) = spec.process.argv.first() else {
        return "empty command".into();
    };
    let path = if first.contains('/') {
        first.clone()
    } else {
        let search = spec
            .process
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        match search
            .split(':')
            .map(|d| format!("{d}/{first}"))
            .find(|p| Path::new(p).is_file())
        {
            Some(p) => p,
            None => return format!("{first}: executable file not found in $PATH"),
        }
    };
    // Standard input, output and error only (runc closes the rest too).
    crate::descriptors::close_all_but_stdio();
    let e = sys::exec(&path, &spec.process.argv, &spec.process.env);
    format!("exec {path}: {e}")
}
