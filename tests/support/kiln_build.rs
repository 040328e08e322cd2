//! `kiln build` as the tests run it: as the caller or as uid 65534, with
//! the outputs and flags a test adds, checked for success or failure with
//! the log in the panic message.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

pub struct KilnBuild {
    cmd: Command,
    what: String,
    /// An argument that goes after every other (a positional context).
    last: Option<std::ffi::OsString>,
}

impl KilnBuild {
    /// `BIN build -c CONTEXT`.
    pub fn new(bin: impl AsRef<OsStr>, context: &Path) -> KilnBuild {
        let mut cmd = Command::new(bin);
        cmd.arg("build").arg("-c").arg(context);
        KilnBuild {
            cmd,
            what: format!("kiln build -c {}", context.display()),
            last: None,
        }
    }

    /// `BIN build --context CONTEXT` for contexts that are no directory
    /// (`tar://...`, `git://...`).
    pub fn with_context(bin: impl AsRef<OsStr>, context: &str) -> KilnBuild {
        let mut cmd = Command::new(bin);
        cmd.args(["build", "--context", context]);
        KilnBuild {
            cmd,
            what: format!("kiln build --context {context}"),
            last: None,
        }
    }

    /// `BIN build [ARGS...] CONTEXT`, the context last as docker build
    /// takes it (run in CONTEXT's parent, naming it relatively).
    pub fn positional(bin: impl AsRef<OsStr>, context: &Path) -> KilnBuild {
        let mut cmd = Command::new(bin);
        cmd.arg("build");
        if let Some(parent) = context.parent() {
            cmd.current_dir(parent);
        }
        KilnBuild {
            cmd,
            what: format!("kiln build {}", context.display()),
            last: context.file_name().map(|n| n.to_os_string()),
        }
    }

    /// `BIN build -c CONTEXT` in a mount namespace where
    /// /proc/sys/fs/binfmt_misc lists no handler (a tmpfs with binfmt_misc's
    /// `status` file alone): as on a machine with no emulator registered
    /// (the kernel's own handlers stay, unseen).
    pub fn without_emulators(bin: impl AsRef<OsStr>, context: &Path) -> KilnBuild {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /proc/sys/fs/binfmt_misc && echo enabled > /proc/sys/fs/binfmt_misc/status && exec \"$0\" \"$@\"",
        ])
        .arg(bin)
        .arg("build")
        .arg("-c")
        .arg(context);
        KilnBuild {
            cmd,
            what: format!("kiln build -c {} with no emulator", context.display()),
            last: None,
        }
    }

    /// The same as uid and gid 65534 with no groups (setpriv), its HOME
    /// and kiln's directory under `home`.
    pub fn as_nobody(bin: impl AsRef<OsStr>, context: &Path, home: &Path) -> KilnBuild {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin)
            .arg("build")
            .arg("-c")
            .arg(context)
            .env("HOME", home)
            .env("KILN_DIR", home.join("kiln-dir"));
        KilnBuild {
            cmd,
            what: format!("kiln build -c {} as uid 65534", context.display()),
            last: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Leaves `file` open in kiln as descriptor `fd` (not close-on-exec),
    /// as a CI runner or a shell's `exec 7>file` leaves one.
    pub fn inherit_fd(mut self, fd: i32, file: &std::fs::File) -> Self {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let from = file.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; both descriptors are valid
        // (`file` outlives the spawn: the caller holds it).
        unsafe {
            self.cmd.pre_exec(move || {
                if libc::dup2(from, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    /// `--oci-layout-path DIR`.
    pub fn oci_layout(self, dir: &Path) -> Self {
        self.arg("--oci-layout-path").arg(dir)
    }

    pub fn output(mut self) -> Output {
        if let Some(last) = self.last.take() {
            self.cmd.arg(last);
        }
        self.cmd
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.what))
    }

    /// Run; panic with the log unless it succeeded. Returns the log.
    pub fn ok(self) -> String {
        let what = self.what.clone();
        let out = self.output();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{what} failed:\n{log}");
        log
    }

    /// Run; panic if it succeeded. Returns the exit code and the log.
    pub fn fails(self) -> (Option<i32>, String) {
        let what = self.what.clone();
        let out = self.output();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{what} succeeded:\n{log}");
        (out.status.code(), log)
    }
}
