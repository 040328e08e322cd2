//! RUN for a platform this machine cannot execute natively: the kernel
//! runs the image's programs through a binfmt_misc handler (an emulator
//! such as qemu-user). Debian's `qemu-user-static` registers its handlers
//! with the fix-binary flag (the kernel opens the emulator when it is
//! registered), so a chroot or namespace needs nothing inside it.
//!
//! A handler is found by what it matches, not by its name: each entry in
//! `/proc/sys/fs/binfmt_misc` names a magic (and mask) at offset 0, and an
//! ELF header's machine field (bytes 18-19) says which architecture it is
//! for. Without one, the step would fail with a bare "exec format error";
//! kiln says which package provides the emulator instead.

use std::path::Path;

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Why a platform's programs cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    #[error("{platform}: kiln does not know which programs run on this architecture, so it cannot look for an emulator")]
    UnknownArchitecture { platform: String },
    #[error("{platform}: this machine cannot run its programs and no binfmt_misc emulator for it is registered in {BINFMT}: install qemu-user-static (Debian and Ubuntu; its handlers are registered with the fix-binary flag), or build this platform on a {arch} runner and join the images with `kiln manifest push`")]
    NoEmulator { platform: String, arch: String },
}

/// Whether programs of OCI architecture `arch` run here: natively, or
/// through a registered, enabled binfmt_misc handler. `Err` says what to
/// install.
pub fn check(arch: &str, variant: Option<&str>) -> Result<(), EmulationError> {
    let platform = match variant {
        Some(v) => format!("linux/{arch}/{v}"),
        None => format!("linux/{arch}"),
    };
    if runs_natively(arch) {
        return Ok(());
    }
    let Some((machine, class)) = elf_machine(arch) else {
        return Err(EmulationError::UnknownArchitecture { platform });
    };
    let dir = Path::new(BINFMT);
    if !dir.join("status").exists() {
        // binfmt_misc is not mounted here (a container often has the
        // host's handlers without the file system that lists them): the
        // kernel may still run the step.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!("{platform}: {BINFMT} is not mounted, so kiln cannot see whether an emulator is registered; running the step anyway (an \"exec format error\" means there is none: install qemu-user-static on the host)");
        });
        return Ok(());
    }
    if handler_registered(dir, machine, class) {
        return Ok(());
    }
    Err(EmulationError::NoEmulator {
        platform,
        arch: arch.to_string(),
    })
}

/// The host's own architecture, and those its processors run as well.
fn runs_natively(arch: &str) -> bool {
    let host = std::env::consts::ARCH;
    matches!(
        (host, arch),
        ("x86_64", "amd64") | ("x86_64", "386") | ("x86", "386") | ("aarch64", "arm64")
    ) || (host == "s390x" && arch == "s390x")
        || (host == "riscv64" && arch == "riscv64")
        || (host == "powerpc64" && arch == "ppc64le")
}

/// ELF `e_machine` and class (1: 32-bit, 2: 64-bit) of an OCI architecture.
fn elf_machine(arch: &str) -> Option<(u16, u8)> {
    Some(match arch {
        "amd64" => (62, 2),
        "386" => (3, 1),
        "arm64" => (183, 2),
        "arm" => (40, 1),
        "ppc64le" => (21, 2),
        "s390x" => (22, 2),
        "riscv64" => (243, 2),
        "mips64le" => (8, 2),
        "loong64" => (258, 2),
        _ => return None,
    })
}

/// Whether an enabled handler in `dir` matches ELF files of `machine`.
fn handler_registered(dir: &Path, machine: u16, class: u8) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        if name == "register" || name == "status" {
            return false;
        }
        std::fs::read_to_string(e.path())
            .map(|text| matches_elf(&text, machine, class))
            .unwrap_or(false)
    })
}

/// Reads one handler's description (as the kernel prints it).
fn matches_elf(text: &str, machine: u16, class: u8) -> bool {
    let mut enabled = false;
    let mut offset = 0u64;
    let mut magic = None;
    let mut mask = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "enabled" {
            enabled = true;
        } else if let Some(o) = line.strip_prefix("offset ") {
            offset = o.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(m) = line.strip_prefix("magic ") {
            magic = hex(m.trim());
        } else if let Some(m) = line.strip_prefix("mask ") {
            mask = hex(m.trim());
        }
    }
    let Some(magic) = magic.filter(|_| enabled && offset == 0) else {
        return false;
    };
    // An ELF header with the class and machine asked for, seen through
    // the handler's mask.
    let mut header = vec![0u8; magic.len()];
    let want: [(usize, u8); 7] = [
        (0, 0x7f),
        (1, b'E'),
        (2, b'L'),
        (3, b'F'),
        (4, class),
        (18, machine.to_le_bytes()[0]),
        (19, machine.to_le_bytes()[1]),
    ];
    if magic.len() < 20 {
        return false;
    }
    for (i, b) in want {
        header[i] = b;
    }
    let masked = |i: usize, b: u8| {
        b & mask
            .as_ref()
            .and_then(|m| m.get(i))
            .copied()
            .unwrap_or(0xff)
    };
    want.iter()
        .all(|&(i, _)| masked(i, header[i]) == masked(i, magic[i]))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Debian's qemu-user-static registers for aarch64.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn finds_a_handler_by_the_elf_machine_it_matches() {
        assert!(matches_elf(AARCH64, 183, 2));
        assert!(!matches_elf(AARCH64, 243, 2), "not riscv64");
        assert!(!matches_elf(AARCH64, 183, 1), "not a 32-bit class");
        let disabled = AARCH64.replace("enabled", "disabled");
        assert!(!matches_elf(&disabled, 183, 2));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        assert!(!handler_registered(dir.path(), 183, 2));
        std::fs::write(dir.path().join("whatever-name"), AARCH64).unwrap();
        assert!(handler_registered(dir.path(), 183, 2));
    }

    #[test]
    fn the_error_names_the_platform_and_the_package() {
        if std::env::consts::ARCH != "x86_64" {
            return;
        }
        assert!(check("amd64", None).is_ok());
        let e = check("mips64le", None).err().map(|e| e.to_string());
        if let Some(e) = e {
            assert!(e.starts_with("linux/mips64le: "), "{e}");
            assert!(e.contains("qemu-user-static"), "{e}");
        }
    }
}
