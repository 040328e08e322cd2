//! Several platforms in one build (`--platform linux/amd64,linux/arm64`):
//! one index pushed after its images, RUN for arm64 through the kernel's
//! binfmt_misc emulator (Debian's qemu-user-static), a `FROM
//! --platform=$BUILDPLATFORM` stage run once and natively, the one-line
//! error where no emulator is registered, and `kiln manifest push`
//! joining images built apart.

use crate::common::*;
use crate::registry::reg_args;
use crate::support::{KilnBuild, Options, TestRegistry};
use std::path::{Path, PathBuf};

/// Debian's busybox-static for arm64, from the package scripts/test-all
/// downloads (`dpkg --add-architecture arm64`, `apt-get download`).
fn arm64_busybox() -> PathBuf {
    let deps = repo_root().join("target/test-deps");
    let bin = deps.join("busybox-arm64");
    // Tests that want it at once: one unpacks it, the others wait.
    static UNPACKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _unpacking = UNPACKING.lock().unwrap_or_else(|e| e.into_inner());
    if bin.is_file() {
        return bin;
    }
    let deb = std::fs::read_dir(&deps)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("busybox-static_") && n.ends_with("_arm64.deb")
        })
        .unwrap_or_else(|| {
            panic!(
                "no busybox-static arm64 package in {}: scripts/test-all downloads it (dpkg --add-architecture arm64; apt-get download busybox-static:arm64)",
                deps.display()
            )
        });
    let unpacked = tempfile::tempdir().unwrap();
    run_ok(tool("dpkg-deb").arg("-x").arg(&deb).arg(unpacked.path()));
    let tmp = deps.join(format!("busybox-arm64.{}", std::process::id()));
    std::fs::copy(unpacked.path().join("bin/busybox"), &tmp).unwrap();
    std::fs::rename(&tmp, &bin).unwrap();
    bin
}

/// Whether arm64 programs run here through a registered binfmt_misc
/// handler; says so loudly when not.
fn arm64_emulated() -> bool {
    let ok = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|t| t.starts_with("enabled"));
    if !ok {
        eprintln!("!!!!!!!! SKIPPED: no arm64 emulator is registered in /proc/sys/fs/binfmt_misc (qemu-user-static; scripts/test-all registers it): the emulated RUN checks did not run !!!!!!!!");
    }
    ok
}

/// `dir/name`: a root file system of `busybox` and its applets.
fn rootfs_tar(busybox: &Path, dir: &Path, name: &str) {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "uname", "ls", "test"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    write(
        &root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    );
    run_ok(
        tool("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
            .arg(root.path())
            .arg("-cf")
            .arg(dir.join(name))
            .arg("."),
    );
}

/// `kiln build` where no emulator is registered (as root: a mount
/// namespace hides /proc/sys/fs/binfmt_misc), without the local cache.
fn kiln_build_without_emulators(ctx: &Path) -> KilnBuild {
    KilnBuild::without_emulators(env!("CARGO_BIN_EXE_kiln"), ctx)
        .arg("--cache=false")
        .env_remove("SOURCE_DATE_EPOCH")
        .env(
            "KILN_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-dir"),
        )
}

/// A busybox base for linux/amd64 (the host's busybox-static) and
/// linux/arm64 (Debian's arm64 package), pushed as one index by kiln
/// itself. Its build only adds files: it needs no emulator, and sees none.
fn push_two_platform_base(reg: &TestRegistry) -> String {
    let ctx = tempfile::tempdir().unwrap();
    rootfs_tar(Path::new("/bin/busybox"), ctx.path(), "rootfs-amd64.tar");
    rootfs_tar(&arm64_busybox(), ctx.path(), "rootfs-arm64.tar");
    write(
        &ctx.path().join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nADD rootfs-${TARGETARCH}.tar /\nCMD [\"/bin/sh\"]\n",
    );
    let base = format!("{}/base/busybox-multi:1", reg.addr);
    kiln_build_without_emulators(ctx.path())
        .args(["-d", &base, "--platform", "linux/amd64,linux/arm64"])
        .args(reg_args(reg))
        .ok();
    base
}

/// A registry with the two-platform base, and a context whose Dockerfile
/// is `dockerfile` with `{base}` in it replaced; `None` (said loudly)
/// unless root, as in CI.
fn registry_base_and_context(
    dockerfile: &str,
) -> Option<(TestRegistry, String, tempfile::TempDir)> {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: builds as root (and as uid 65534), as in CI !!!!!!!!");
        return None;
    }
    let reg = TestRegistry::start(Options::default());
    let base = push_two_platform_base(&reg);
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &dockerfile.replace("{base}", &base),
    );
    Some((reg, base, ctx))
}

/// The media type and the architectures of the index `reference` names.
fn index_of(reference: &str) -> (String, Vec<String>) {
    let raw = registry_manifest(reference);
    let _ = raw.get("manifests").expect("an index");
    (
        raw["mediaType"].as_str().unwrap_or_default().to_string(),
        raw["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !is_attestation(m))
            .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
            .collect(),
    )
}

fn is_attestation(entry: &serde_json::Value) -> bool {
    entry["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
}

/// The image digests `reference`'s attestation manifests are for, in the
/// index's order (BuildKit's unknown/unknown entries).
fn attested(reference: &str) -> Vec<String> {
    let raw = registry_manifest(reference);
    let entries = raw["manifests"].as_array().unwrap();
    let images: Vec<&str> = entries
        .iter()
        .filter(|m| !is_attestation(m))
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    let out: Vec<String> = entries
        .iter()
        .filter(|m| is_attestation(m))
        .map(|m| {
            assert_eq!(m["platform"]["os"], "unknown");
            m["annotations"]["vnd.docker.reference.digest"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for d in &out {
        assert!(
            images.contains(&d.as_str()),
            "{d} names no image of {reference}"
        );
    }
    out
}

/// File `path` of `reference`'s image for `arch` (copied out with
/// skopeo `--override-arch`, unpacked with umoci).
fn file_in(reference: &str, arch: &str, path: &str) -> String {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("l");
    run_ok(
        tool("skopeo")
            .args(["copy", "--src-tls-verify=false", "--override-arch", arch])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:x", layout.display())),
    );
    let bundle = umoci_unpack(&layout, "x");
    std::fs::read_to_string(bundle.path().join("b/rootfs").join(path)).unwrap()
}

/// A docker client whose `manifest inspect` reads OCI manifests and
/// indexes (20.10's reports "no such manifest" for any OCI manifest; the
/// clients since 23.0 read them): `docker` on PATH, or
/// `$KILN_TEST_DOCKER_CLI`.
fn docker_cli_reading_oci() -> Option<std::process::Command> {
    let bin = std::env::var("KILN_TEST_DOCKER_CLI").unwrap_or_else(|_| "docker".into());
    let version = std::process::Command::new(&bin)
        .args(["version", "--format", "{{.Client.Version}}"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 23 {
        eprintln!("!!!!!!!! SKIPPED: no docker client that reads OCI indexes ({bin}: {version:?}); `docker manifest inspect` did not run !!!!!!!!");
        return None;
    }
    Some(std::process::Command::new(bin))
}

#[test]
fn two_platforms_in_one_build_make_an_index() {
    let Some((reg, base, _)) = registry_base_and_context("") else {
        return;
    };
    assert_eq!(
        index_of(&base),
        (
            "application/vnd.oci.image.index.v1+json".to_string(),
            vec!["amd64".to_string(), "arm64".to_string()]
        )
    );
    if !arm64_emulated() {
        return;
    }
    let (work, ctx) = context_open_to_nobody(&format!(
        "FROM {base}\nARG TARGETARCH\nRUN echo \"$(uname -m) $TARGETARCH\" > /arch\n"
    ));
    for isolation in ["unprivileged", "chroot"] {
        let dest = format!("{}/app/arch:{isolation}", reg.addr);
        let log = kiln_build_isolated(isolation, &ctx, work.path())
            .args(["-d", &dest, "--platform", "linux/amd64,linux/arm64"])
            .args(reg_args(&reg))
            .ok();
        assert!(
            log.contains("[linux/arm64] "),
            "lines name their platform:\n{log}"
        );
        assert_eq!(index_of(&dest).1, ["amd64", "arm64"]);
        // Pushed with buildx's default: each image's provenance after them.
        assert_eq!(attested(&dest).len(), 2);
        assert_eq!(
            file_in(&dest, "amd64", "arch"),
            "x86_64 amd64\n",
            "{isolation}"
        );
        assert_eq!(
            file_in(&dest, "arm64", "arch"),
            "aarch64 arm64\n",
            "{isolation}"
        );
    }
}

/// The cross-compilation pattern: a stage on the build platform runs
/// once, natively, and each platform's final stage copies its result.
#[test]
fn a_build_platform_stage_runs_once_and_natively() {
    let Some((reg, _, ctx)) = registry_base_and_context(
        "FROM --platform=$BUILDPLATFORM {base} AS build\n\
         RUN echo \"$(uname -m) $(cat /proc/sys/kernel/random/uuid)\" > /built\n\
         FROM {base}\nARG TARGETARCH\nCOPY --from=build /built /built-for-$TARGETARCH\n",
    ) else {
        return;
    };
    let dest = format!("{}/app/cross:1", reg.addr);
    let report = ctx.path().join("report.json");
    kiln_build(ctx.path())
        .args([
            "-d",
            &dest,
            "--platform",
            "linux/amd64,linux/arm64",
            "--report",
        ])
        .arg(&report)
        .args(reg_args(&reg))
        .ok();
    let report = json(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(report["totals"]["runs_executed"], 1, "{report}");
    assert_eq!(report["totals"]["shared"], 1, "{report}");
    let amd64 = file_in(&dest, "amd64", "built-for-amd64");
    let arm64 = file_in(&dest, "arm64", "built-for-arm64");
    assert!(amd64.starts_with("x86_64 "), "ran natively: {amd64}");
    assert_eq!(amd64, arm64, "one run for both platforms");
    // The final stages differ: each platform's own busybox.
    let config = |arch: &str| {
        json(&run_ok(tool("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            &format!("docker://{dest}"),
        ])))
    };
    assert_ne!(config("amd64")["Layers"][0], config("arm64")["Layers"][0]);
}

#[test]
fn without_an_emulator_the_build_fails_and_pushes_nothing() {
    // The emulators are hidden in a mount namespace: as root.
    let Some((reg, _, ctx)) = registry_base_and_context("FROM {base}\nRUN echo hi > /x\n") else {
        return;
    };
    let (code, log) = kiln_build_without_emulators(ctx.path())
        .args(["-d", &format!("{}/app/noemu:1", reg.addr)])
        .args(["--platform", "linux/amd64,linux/arm64"])
        .args(reg_args(&reg))
        .fails();
    assert_eq!(code, Some(1), "a failed step's exit code:\n{log}");
    assert!(
        log.contains("linux/arm64: this machine cannot run its programs")
            && log.contains("install qemu-user-static"),
        "{log}"
    );
    assert_eq!(reg.requests("PUT", "/v2/app/noemu/"), 0, "nothing pushed");
    assert_eq!(reg.requests("POST", "/v2/app/noemu/"), 0, "nothing pushed");
}

#[test]
fn manifest_push_joins_images_built_apart() {
    let Some((reg, _, ctx)) = registry_base_and_context(
        "FROM {base}\nARG TARGETARCH\nCOPY app.txt /app-$TARGETARCH.txt\n",
    ) else {
        return;
    };
    write(&ctx.path().join("app.txt"), "app\n");
    let build_with = |dest: &str, platforms: &str, provenance: &str| {
        kiln_build(ctx.path())
            .args([
                "-d",
                &format!("{}/{dest}", reg.addr),
                "--platform",
                platforms,
                provenance,
            ])
            .args(reg_args(&reg))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .ok()
    };
    // Plain images first: their index is byte for byte the one a build of
    // both platforms pushes (provenance would name each push's own tag).
    let build = |dest: &str, platforms: &str| build_with(dest, platforms, "--provenance=false");
    // One runner per platform, then the index.
    build("app/joined:amd64", "linux/amd64");
    build("app/joined:arm64", "linux/arm64");
    let digest_file = ctx.path().join("digest");
    let manifest_push = |target: &str, images: &[&str]| {
        let mut cmd = kiln();
        cmd.args([
            "manifest",
            "push",
            "--target",
            &format!("{}/{target}", reg.addr),
        ])
        .args(images.iter().map(|i| format!("{}/{i}", reg.addr)))
        .args(reg_args(&reg))
        .arg("--digest-file")
        .arg(&digest_file);
        cmd.output().unwrap()
    };
    let out = manifest_push("app/joined:1", &["app/joined:amd64", "app/joined:arm64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let joined = format!("{}/app/joined:1", reg.addr);
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(digest, registry_digest(&joined));
    // The same index one build of both platforms makes.
    build("app/together:1", "linux/amd64,linux/arm64");
    assert_eq!(
        index_of(&joined),
        index_of(&format!("{}/app/together:1", reg.addr))
    );
    assert_eq!(
        digest,
        registry_digest(&format!("{}/app/together:1", reg.addr))
    );
    assert_eq!(file_in(&joined, "arm64", "app-arm64.txt"), "app\n");
    // Into another repository: the images are copied there first.
    let out = manifest_push("other/joined:1", &["app/joined:amd64", "app/joined:arm64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        file_in(
            &format!("{}/other/joined:1", reg.addr),
            "amd64",
            "app-amd64.txt"
        ),
        "app\n"
    );
    // Images pushed with their provenance (an index of one image each):
    // the joined index names both images, then both attestations.
    build_with("app/attested:amd64", "linux/amd64", "--provenance=mode=min");
    build_with("app/attested:arm64", "linux/arm64", "--provenance=mode=min");
    let out = manifest_push(
        "other/attested:1",
        &["app/attested:amd64", "app/attested:arm64"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attested_joined = format!("{}/other/attested:1", reg.addr);
    assert_eq!(index_of(&attested_joined).1, ["amd64", "arm64"]);
    assert_eq!(attested(&attested_joined).len(), 2);
    let copied = tempfile::tempdir().unwrap();
    run_ok(tool("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{attested_joined}"),
        &format!("oci:{}:x", copied.path().display()),
    ]));
    if let Some(mut docker) = docker_cli_reading_oci() {
        let listed = run_ok(docker.args(["manifest", "inspect", "--insecure", &joined]));
        assert!(
            listed.contains("\"arm64\"") && listed.contains("\"amd64\""),
            "{listed}"
        );
    }
    // Images in Docker's schema 2 (as `docker build` pushes them) join
    // into a Docker manifest list.
    for arch in ["amd64", "arm64"] {
        run_ok(tool("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            &format!("docker://{}/app/joined:{arch}", reg.addr),
            &format!("docker://{}/app/joined:{arch}-v2s2", reg.addr),
        ]));
    }
    let out = manifest_push(
        "app/joined:v2s2",
        &["app/joined:amd64-v2s2", "app/joined:arm64-v2s2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        index_of(&format!("{}/app/joined:v2s2", reg.addr)).0,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    // Refused: two images of one platform, an image the registry lacks.
    let out = manifest_push("app/joined:2", &["app/joined:amd64", "app/joined:amd64"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("two images for linux/amd64"),
        "{err}"
    );
    let out = manifest_push("app/joined:3", &["app/joined:amd64", "app/joined:missing"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("not found"), "{err}");

    // Files: an OCI layout holds the index under one ref; a docker
    // archive holds one platform and is refused up front.
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("l");
    kiln_build(ctx.path())
        .oci_layout(&layout)
        .args(["--platform", "linux/amd64,linux/arm64"])
        .args(reg_args(&reg))
        .ok();
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    let raw = json(&run_ok(tool("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:latest", layout.display()),
    ])));
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    let (code, log) = kiln_build(ctx.path())
        .args(["--tar-path"])
        .arg(out.path().join("image.tar"))
        .args(["--platform", "linux/amd64,linux/arm64"])
        .args(reg_args(&reg))
        .fails();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("a docker archive holds one platform's image"),
        "{log}"
    );
}
