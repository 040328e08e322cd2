//! Bad input gets one clear error naming file, line (and column), never a
//! panic, and leaves no output behind.

use crate::common::*;
use std::path::Path;

/// Build `dockerfile` in a context holding `files`; return stderr of the
/// failed build (asserting it failed cleanly, with exit code `code`:
/// 1 a step failed, 3 a bad Dockerfile, 4 a registry error).
fn build_fails(code: i32, dockerfile: &str, files: &[(&str, &str)], extra: &[&str]) -> String {
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("Dockerfile"), dockerfile);
    for (p, text) in files {
        write(&ctx.path().join(p), text);
    }
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let (got, stderr) = kiln_build(ctx.path())
        .oci_layout(&layout)
        .args(extra)
        .fails();
    assert_eq!(got, Some(code), "expected exit code {code}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(
        !Path::new(&layout).join("index.json").exists(),
        "no image on failure"
    );
    stderr
}

#[test]
fn parse_errors_name_file_line_and_column_and_show_the_line() {
    let cases: &[(&str, &str, i32)] = &[
        ("FROM scratch\nCOPY --nope=1 a /b\n", ":2:6: ", 3),
        ("FROM scratch\nFOO bar\n", ":2:1: ", 3),
        ("FROM scratch\nCOPY onlyone\n", ":2:", 3),
        (
            "FROM scratch\nHEALTHCHECK --interval=xyz CMD true\n",
            ":2:",
            3,
        ),
        ("COPY a /b\n", ":1:", 3),
        ("FROM scratch\nCOPY <<EOF /x\nnever ends\n", ":2:", 3),
        ("FROM scratch AS a\nFROM scratch AS a\n", ":2:", 3),
        ("FROM scratch\nENV\n", ":2:", 3),
        // Not a stage: an image, which no registry here serves.
        ("FROM scratch\nCOPY --from=nosuchstage0 /a /b\n", ":2:", 4),
    ];
    for (dockerfile, location, code) in cases {
        let err = build_fails(*code, dockerfile, &[], &[]);
        assert!(
            err.contains(&format!("Dockerfile{location}")),
            "{dockerfile:?} gave: {err}"
        );
        let after = err.split("Dockerfile:").nth(1).unwrap_or("");
        let fields: Vec<&str> = after.splitn(3, ':').collect();
        assert!(
            fields.len() == 3
                && fields[0].parse::<usize>().is_ok()
                && fields[1].parse::<usize>().is_ok(),
            "{dockerfile:?}: no file:line:column in {err}"
        );
        let line_no: usize = fields[0].parse().unwrap();
        let line = dockerfile.lines().nth(line_no - 1).unwrap();
        assert!(
            err.contains(line),
            "{dockerfile:?}: the offending line is not shown: {err}"
        );
    }
}

#[test]
fn build_errors_name_the_instruction() {
    // No shell in scratch: the exit code propagates with the step's line.
    let err = build_fails(1, "FROM scratch\nRUN echo hi\n", &[], &[]);
    assert!(err.contains("exec /bin/sh: No such file"), "{err}");
    assert!(
        err.contains("Dockerfile:2:5: the command [\"/bin/sh\" \"-c\" \"echo hi\"] did not complete successfully: exit code 127"),
        "{err}"
    );
    // A registry nobody answers on: one clear error at the FROM line.
    let err = build_fails(
        4,
        "FROM 127.0.0.1:9/nothing/here:1\n",
        &[],
        &[
            "--insecure-registry",
            "127.0.0.1:9",
            "--image-download-retry",
            "0",
        ],
    );
    assert!(
        err.contains("Dockerfile:1:") && err.contains("127.0.0.1:9/nothing/here"),
        "{err}"
    );
    let err = build_fails(1, "FROM scratch\nCOPY missing.txt /\n", &[], &[]);
    assert!(
        err.contains("Dockerfile:2:6: missing.txt: not found"),
        "{err}"
    );
    // Nothing matches at all: an error naming the sources.
    let err = build_fails(1, "FROM scratch\nCOPY missing* /dst\n", &[], &[]);
    assert!(err.contains("no file matches missing*"), "{err}");
    let err = build_fails(
        1,
        "FROM scratch\nCOPY --chown=app a /a\n",
        &[("a", "1")],
        &[],
    );
    assert!(
        err.contains("unable to find user app") && err.contains("/etc/passwd"),
        "{err}"
    );
    let err = build_fails(
        1,
        "FROM scratch\nCOPY --chmod=u+q a /a\n",
        &[("a", "1")],
        &[],
    );
    assert!(err.contains("--chmod=u+q"), "{err}");
    let err = build_fails(
        1,
        "FROM scratch\nCOPY secret /a\n",
        &[("secret", "1"), (".dockerignore", "secret\n")],
        &[],
    );
    assert!(
        err.contains("secret: not found"),
        "an ignored file cannot be copied: {err}"
    );
    let err = build_fails(
        3,
        "FROM scratch\nCOPY a /a\n",
        &[("a", "1")],
        &["--target", "nosuch"],
    );
    assert!(err.contains("nosuch"), "{err}");
    let err = build_fails(
        3,
        "FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /y /y\n",
        &[],
        &[],
    );
    assert!(err.contains("cycle") || err.contains("circular"), "{err}");
}

#[test]
fn hostile_archive_is_refused() {
    let ctx = tempfile::tempdir().unwrap();
    // An archive whose entry climbs out of the destination.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let data = b"evil";
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    {
        let name = b"../../etc/evil";
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
    }
    header.set_cksum();
    builder.append(&header, &data[..]).unwrap();
    std::fs::write(ctx.path().join("evil.tar"), builder.into_inner().unwrap()).unwrap();
    let tar_bytes = std::fs::read(ctx.path().join("evil.tar")).unwrap();
    let err = build_fails(
        1,
        "FROM scratch\nADD evil.tar /x/\n",
        &[("evil.tar", &String::from_utf8_lossy(&tar_bytes))],
        &[],
    );
    assert!(
        err.contains("evil.tar") && err.contains("../../etc/evil") && err.contains("leaves"),
        "{err}"
    );
}

#[test]
fn a_build_without_output_is_refused() {
    let hello = repo_root().join("fixtures/hello");
    let out = kiln()
        .args(["build", "-c", hello.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no output") && err.contains("--oci-layout-path"),
        "{err}"
    );
    // A destination nobody answers on: the push fails naming it.
    let (code, err) = kiln_build(&hello)
        .args(["-d", "127.0.0.1:9/x:1"])
        .args(["--insecure-registry", "127.0.0.1:9", "--push-retry", "0"])
        .fails();
    assert_eq!(code, Some(4), "a registry error: {err}");
    assert!(
        err.contains("pushing 127.0.0.1:9/x:1") && err.contains("cannot connect"),
        "{err}"
    );
}

/// A context symlink pointing out of the context is resolved inside it: the
/// host's files are never copied.
#[test]
fn context_symlinks_cannot_leave_the_context() {
    for target in ["/etc", "../../../../../../etc"] {
        let ctx = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(target, ctx.path().join("escape")).unwrap();
        write(
            &ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY escape/passwd /stolen\n",
        );
        let out = tempfile::tempdir().unwrap();
        let (code, err) = kiln_build(ctx.path())
            .oci_layout(&out.path().join("l"))
            .fails();
        assert_eq!(
            code,
            Some(1),
            "{target}: the host's /etc/passwd was copied: {err}"
        );
        assert!(err.contains("escape/passwd: not found"), "{err}");
    }
}

/// In chroot mode a failed step is told that /proc or /dev is missing only
/// when its output names them (and that chroot mode uses no mounts when
/// it was asked for); an image that is not there is named with its tag.
#[test]
fn failed_steps_and_missing_images_are_told_what_they_lack() {
    let Some((reg, base)) = crate::run::chroot_registry_and_base() else {
        return;
    };
    let args = crate::registry::reg_args(&reg);
    let mut extra: Vec<&str> = args.iter().map(String::as_str).collect();
    extra.extend(["--isolation", "chroot"]);
    let err = build_fails(1, &format!("FROM {base}\nRUN exit 7\n"), &[], &extra);
    assert!(err.contains("exit code 7"), "{err}");
    assert!(
        !err.contains("/proc") && !err.contains("chroot mode"),
        "{err}"
    );
    let err = build_fails(
        1,
        &format!("FROM {base}\nRUN cat /proc/self/status\n"),
        &[],
        &extra,
    );
    assert!(
        err.contains("/proc is unavailable: mounts are not used in chroot mode"),
        "{err}"
    );
    let missing = format!("{}/nope:1", reg.addr);
    let err = build_fails(4, &format!("FROM {missing}\n"), &[], &extra);
    assert!(
        err.contains(&format!("manifest {missing}: not found")),
        "{err}"
    );
}
