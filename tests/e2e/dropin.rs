//! kiln as a drop-in: Kaniko's job lines and `docker build` lines as users
//! write them, the contexts they pass (tar on stdin, git), and what a user
//! sees when a flag or a registry is wrong.

use crate::common::*;
use crate::support::{Options, TestRegistry};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The most common Kaniko GitLab job line, verbatim but for the kiln binary.
#[test]
fn the_kaniko_gitlab_job_line_builds_and_pushes_both_tags() {
    let reg = TestRegistry::start(Options::default());
    let checkout = hello_project();
    let ci_project_dir = checkout.path().to_str().unwrap();
    let image = format!("{}/group/project", reg.addr);
    let sha = "1a2b3c4d";
    let digest_file = checkout.path().join("digest");
    let line = [
        "--context".to_string(),
        ci_project_dir.to_string(),
        "--dockerfile".into(),
        format!("{ci_project_dir}/Dockerfile"),
        "--destination".into(),
        format!("{image}:{sha}"),
        "--destination".into(),
        format!("{image}:latest"),
        "--cache=true".into(),
        "--cache-repo".into(),
        format!("{image}/cache"),
        "--digest-file".into(),
        digest_file.to_str().unwrap().into(),
        "--insecure".into(),
        "--skip-tls-verify".into(),
    ];
    // No `build`: Kaniko's executor takes its flags alone.
    let out = kiln().args(&line).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(registry_digest(&format!("{image}:{sha}")), digest);
    assert_eq!(registry_digest(&format!("{image}:latest")), digest);
    // What Kaniko pushed: an image manifest, no index of attestations.
    let raw = registry_manifest(&format!("{image}:{sha}"));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The same line asking for provenance gets buildx's index.
    let out = kiln()
        .args(&line)
        .args(["--provenance=mode=min", "--destination"])
        .arg(format!("{image}:attested"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = registry_manifest(&format!("{image}:attested"));
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
}

/// A `docker build` line: -t, --push, --iidfile, --metadata-file, the
/// context as the last argument.
#[test]
fn a_docker_build_line_builds_and_pushes() {
    let reg = TestRegistry::start(Options::default());
    let checkout = hello_project();
    let iid = checkout.path().join("iid");
    let meta = checkout.path().join("meta.json");
    let name = format!("{}/team/app:1", reg.addr);
    let log = kiln_build_positional(checkout.path())
        .args(["-t", &name, "--push"])
        .arg("--iidfile")
        .arg(&iid)
        .arg("--metadata-file")
        .arg(&meta)
        .args(["--insecure-registry", &reg.addr])
        .ok();
    let digest = registry_digest(&name);
    let meta = json(&std::fs::read_to_string(&meta).unwrap());
    assert_eq!(meta["containerimage.digest"], digest.as_str(), "{log}");
    assert_eq!(meta["image.name"], name.as_str());
    // docker's image ID is the config digest (of the image under the
    // index that carries its provenance).
    let config = tool("skopeo")
        .args(["inspect", "--tls-verify=false", "--config", "--raw"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(config.status.success());
    let config_digest = format!("sha256:{}", kiln_image::sha256_hex(&config.stdout));
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), config_digest);
    assert_eq!(meta["containerimage.config.digest"], config_digest.as_str());

    // -t alone names an image kiln has nowhere to keep: a usage error.
    let (code, err) = kiln_build_positional(checkout.path())
        .args(["-t", &name])
        .fails();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--push"), "{err}");
}

/// `kiln build ... CONTEXT` with the context last, as docker takes it.
fn kiln_build_positional(ctx: &Path) -> kiln_test_support::KilnBuild {
    kiln_test_support::KilnBuild::positional(env!("CARGO_BIN_EXE_kiln"), ctx)
        .env_remove("SOURCE_DATE_EPOCH")
        .env(
            "KILN_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-dir"),
        )
}

#[test]
fn a_context_on_stdin_builds() {
    let checkout = hello_project();
    let tar = Command::new("tar")
        .args(["-czf", "-", "-C"])
        .arg(checkout.path())
        .args(["Dockerfile", "hello"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("l");
    let mut child = kiln()
        .args(["build", "--context", "tar://stdin", "--oci-layout-path"])
        .arg(&layout)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let bundle = umoci_unpack(&layout, "latest");
    assert!(bundle.path().join("b/rootfs/hello").is_file());
    // The same archive as a file: tar://FILE.
    let archive = out.path().join("context.tar.gz");
    std::fs::write(&archive, &tar.stdout).unwrap();
    let layout = out.path().join("l2");
    kiln_build_raw(&format!("tar://{}", archive.display()))
        .oci_layout(&layout)
        .ok();
    let bundle = umoci_unpack(&layout, "latest");
    assert!(bundle.path().join("b/rootfs/hello").is_file());
}

/// In-place mode takes over the container's own `/`: outside kiln's image
/// it is refused (before anything is touched) unless --force.
#[test]
fn in_place_mode_is_refused_outside_kilns_image() {
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("Dockerfile"), "FROM scratch\nRUN true\n");
    let out = tempfile::tempdir().unwrap();
    let (code, err) = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(["--isolation", "in-place"])
        .env_remove("KILN_HOME")
        .fails();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("meant for kiln's image") && err.contains("--force"),
        "{err}"
    );
}

/// A git repository served over HTTP (git's dumb protocol, a local
/// server): Kaniko's git://HOST/REPO#refs/heads/BRANCH form and docker's
/// URL#REF:SUBDIR form, and --context-sub-path.
#[test]
fn git_contexts_build() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("app")).unwrap();
    for f in ["Dockerfile", "hello"] {
        std::fs::copy(
            repo_root().join("fixtures/hello").join(f),
            src.join("app").join(f),
        )
        .unwrap();
    }
    let (server, _commit) = serve_git_repo(work.path());

    let kaniko_form = format!("git://{}/repo.git#refs/heads/release", server.addr);
    let docker_form = format!("http://{}/repo.git#release:app", server.addr);
    for (context, sub) in [
        (kaniko_form.as_str(), Some("app")),
        (docker_form.as_str(), None),
    ] {
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("l");
        let mut build = kiln_build_raw(context)
            .env("GIT_PULL_METHOD", "http")
            .oci_layout(&layout);
        if let Some(s) = sub {
            build = build.args(["--context-sub-path", s]);
        }
        build.ok();
        let bundle = umoci_unpack(&layout, "latest");
        assert!(bundle.path().join("b/rootfs/hello").is_file(), "{context}");
    }
}

/// `kiln build --context VALUE` for a context that is no directory.
fn kiln_build_raw(context: &str) -> kiln_test_support::KilnBuild {
    kiln_test_support::KilnBuild::with_context(env!("CARGO_BIN_EXE_kiln"), context)
        .env_remove("SOURCE_DATE_EPOCH")
        .env(
            "KILN_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-dir"),
        )
}

#[test]
fn wrong_flags_and_plain_http_registries_say_what_to_do() {
    let checkout = hello_project();
    // An unknown flag: a usage error that names the nearest one.
    let (code, err) = kiln_build(checkout.path())
        .args(["--destnation", "x/y:1"])
        .fails();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--destination"), "{err}");
    // Kaniko flags that change nothing here are accepted, with why.
    let out = tempfile::tempdir().unwrap();
    let log = kiln_build(checkout.path())
        .oci_layout(&out.path().join("l"))
        .args([
            "--single-snapshot",
            "--snapshot-mode=redo",
            "--use-new-run=true",
            "--cleanup",
            "--compressed-caching=false",
            "--skip-unused-stages",
            "--ignore-var-run=false",
        ])
        .ok();
    assert!(
        log.contains("--single-snapshot has no effect in kiln"),
        "{log}"
    );
    assert!(log.contains("--snapshot-mode has no effect"), "{log}");
    // A registry that speaks plain HTTP: one line saying what to pass.
    let reg = TestRegistry::start(Options::default());
    let started = std::time::Instant::now();
    let (code, err) = kiln_build(checkout.path())
        .args(["-d", &format!("{}/plain/app:1", reg.addr)])
        .fails();
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("plain HTTP") && err.contains(&format!("--insecure-registry {}", reg.addr)),
        "{err}"
    );
    assert!(
        !err.contains("retrying"),
        "no retries of a TLS error: {err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn json_logs_parse_line_by_line() {
    let checkout = hello_project();
    let out = tempfile::tempdir().unwrap();
    let log = kiln_build(checkout.path())
        .oci_layout(&out.path().join("l"))
        .args(["--log-format", "json"])
        .ok();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 2, "{log}");
}

/// A terminal session (under `script`, which gives kiln a pty) shows live
/// bars; with `CI=true` the same build logs plain timestamped lines.
#[test]
fn a_terminal_shows_bars_and_ci_shows_plain_lines() {
    let checkout = hello_project();
    let session = |ci: bool| {
        let out = tempfile::tempdir().unwrap();
        let line = format!(
            "{} build -c {} --oci-layout-path {}",
            env!("CARGO_BIN_EXE_kiln"),
            checkout.path().display(),
            out.path().join("l").display()
        );
        let mut cmd = tool("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env(
                "KILN_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-dir"),
            )
            .env_remove("CI");
        if ci {
            cmd.env("CI", "true");
        }
        let o = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{text}");
        text
    };
    let tty = session(false);
    assert!(tty.contains("✓ [1/3]"), "a finished step's bar: {tty:?}");
    assert!(
        tty.contains("\u{1b}["),
        "terminal control sequences: {tty:?}"
    );
    let ci = session(true);
    assert!(!ci.contains('✓'), "{ci:?}");
    let step = ci
        .lines()
        .find(|l| l.contains("[1/3]"))
        .unwrap_or_else(|| panic!("{ci:?}"));
    assert!(
        step.starts_with("20") && step.contains("Z "),
        "timestamped: {step:?}"
    );
    assert!(ci.contains("done in"), "{ci:?}");
}
