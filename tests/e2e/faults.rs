//! Builds under stress: several at once on one kiln directory, a full
//! disk, a build killed at any moment. Nothing may be lost or corrupted:
//! the next build succeeds and makes the same image.

use crate::common::*;
use crate::registry::{push_busybox_base, reg_args};
use crate::support::{Options, TestRegistry};
use std::path::Path;

/// A context whose image takes a RUN, a COPY and the base's files.
fn context(dir: &Path, base: &str) {
    write(
        &dir.join("Dockerfile"),
        &format!(
            "FROM {base}\nRUN mkdir /data && echo built > /data/built && ls /bin > /data/bin\n\
             COPY big.bin /data/\nWORKDIR /data\n"
        ),
    );
    // 3 MiB that do not compress: more than the small disk below holds.
    std::fs::write(dir.join("big.bin"), crate::support::incompressible(3 << 20)).unwrap();
}

/// The manifest digest `kiln build` writes to an OCI layout in `out`,
/// with `kiln_dir` as its directory (the local step cache on).
fn build_digest(ctx: &Path, reg: &TestRegistry, kiln_dir: &Path, out: &Path) -> String {
    let digest = out.join("digest");
    // Not kiln_build(): it turns the local step cache off.
    kiln_test_support::KilnBuild::new(env!("CARGO_BIN_EXE_kiln"), ctx)
        .oci_layout(&out.join("l"))
        .args(reg_args(reg))
        .arg("--kiln-dir")
        .arg(kiln_dir)
        .arg("--digest-file")
        .arg(&digest)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .ok();
    std::fs::read_to_string(digest).unwrap()
}

#[test]
fn eight_builds_at_once_on_one_kiln_dir_make_the_image_one_makes() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: builds as root, as in CI !!!!!!!!");
        return;
    }
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-eight", "");
    let ctx = tempfile::tempdir().unwrap();
    context(ctx.path(), &base);
    let work = tempfile::tempdir().unwrap();
    let alone = build_digest(
        ctx.path(),
        &reg,
        &work.path().join("alone"),
        &work.path().join("out-alone"),
    );
    let shared = work.path().join("shared");
    let digests: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (ctx, reg, shared, work) = (ctx.path(), &reg, &shared, work.path());
                s.spawn(move || build_digest(ctx, reg, shared, &work.join(format!("out-{i}"))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for d in &digests {
        assert_eq!(d, &alone, "{digests:?}");
    }
    // And the directory they shared still builds it, from its cache.
    assert_eq!(
        build_digest(ctx.path(), &reg, &shared, &work.path().join("out-after")),
        alone
    );
}

#[test]
fn a_full_disk_is_an_error_naming_the_path() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: mounts a small tmpfs, as root !!!!!!!!");
        return;
    }
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-full", "");
    let ctx = tempfile::tempdir().unwrap();
    context(ctx.path(), &base);
    let small = tempfile::tempdir().unwrap();
    run_ok(
        tool("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(small.path()),
    );
    let out = tempfile::tempdir().unwrap();
    let (code, log) = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(reg_args(&reg))
        .arg("--kiln-dir")
        .arg(small.path())
        .fails();
    let _ = tool("umount").arg(small.path()).status();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("No space left on device")
            && log.contains(&small.path().display().to_string()),
        "the error names the full disk's path:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_build_killed_at_any_moment_leaves_the_kiln_dir_usable() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: builds as root, as in CI !!!!!!!!");
        return;
    }
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-killed", "");
    let ctx = tempfile::tempdir().unwrap();
    context(ctx.path(), &base);
    let work = tempfile::tempdir().unwrap();
    let clean = build_digest(
        ctx.path(),
        &reg,
        &work.path().join("clean"),
        &work.path().join("out-clean"),
    );
    let kiln_dir = work.path().join("killed");
    // Killed (SIGKILL, no chance to clean up) at moments spread over a
    // build: while fetching, extracting, running, writing layers, caching.
    for (i, ms) in [5u64, 40, 80, 150, 250, 400, 600, 900]
        .into_iter()
        .enumerate()
    {
        let out = work.path().join(format!("out-k{i}"));
        let mut child = kiln()
            .args(["build", "-c"])
            .arg(ctx.path())
            .args(["--oci-layout-path"])
            .arg(out.join("l"))
            .args(reg_args(&reg))
            .arg("--kiln-dir")
            .arg(&kiln_dir)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        // The whole process group: the build and its step helpers.
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        build_digest(ctx.path(), &reg, &kiln_dir, &work.path().join("out-after")),
        clean,
        "after the kills, the same image"
    );

    // `kiln cache verify` finds what is broken and removes it: a pulled
    // blob, a cached layer blob and an extracted layer's index damaged,
    // and what a killed build left behind.
    // A blob named by its digest: a killed build may have left a
    // temporary file of its own beside them (verify removes those).
    let first_file = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                p.is_file() && name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .unwrap()
    };
    let pulled = first_file(&kiln_dir.join("blobs/sha256"));
    let cached = first_file(&kiln_dir.join("cache/blobs/sha256"));
    let layer = std::fs::read_dir(kiln_dir.join("layers/v3"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let leftover = kiln_dir.join("tmp/build-left");
    std::fs::create_dir_all(&leftover).unwrap();
    for blob in [&pulled, &cached] {
        let mut bytes = std::fs::read(blob).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(blob, bytes).unwrap();
    }
    std::fs::write(
        layer.join("index.jsonl"),
        "{\"uncompressed_size\": 1, \"overlay_ready\": true}\n{bad",
    )
    .unwrap();
    let out = kiln()
        .args(["cache", "verify", "--kiln-dir"])
        .arg(&kiln_dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    for gone in [&pulled, &cached, &layer, &leftover] {
        assert!(!gone.exists(), "{} was not removed:\n{log}", gone.display());
    }
    // The killed builds' own work directories went too.
    let left: Vec<_> = std::fs::read_dir(kiln_dir.join("tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        build_digest(
            ctx.path(),
            &reg,
            &kiln_dir,
            &work.path().join("out-verified")
        ),
        clean,
        "after verify, the same image"
    );
}
