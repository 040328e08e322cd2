//! Against the real registry: a busybox base image built by kiln from
//! Debian's busybox-static and pushed; an image FROM it pushed to another
//! repository; read back with skopeo, umoci and docker.

use crate::common::*;
use crate::support::{Options, TestRegistry};
use std::path::Path;

/// A context whose Dockerfile makes a busybox base image: `ADD rootfs.tar /`.
pub fn busybox_context(dir: &Path, extra: &str) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install Debian's busybox-static (the README's test command does)"
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "echo", "ls", "pwd", "mkdir", "rm", "chown", "chmod", "ln", "touch", "id",
        "mv", "sleep", "test",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    write(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    );
    write(&rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\n");
    run_ok(
        std::process::Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(dir.join("rootfs.tar"))
            .arg("."),
    );
    std::fs::remove_dir_all(&rootfs).unwrap();
    write(
        &dir.join("Dockerfile"),
        &format!("FROM scratch\nADD rootfs.tar /\nCMD [\"/bin/sh\"]\n{extra}"),
    );
}

const APP: &str = r#"ARG BASE
FROM ${BASE}
ARG BASE
ENV GREETING=hello-from-kiln
WORKDIR /app
COPY msg.txt .
COPY --chown=app:app msg.txt /home/app/owned.txt
COPY --from=${BASE} /etc/passwd /copied-passwd
CMD ["/bin/sh", "-c", "cat /app/msg.txt; echo $GREETING; pwd"]
"#;

/// A busybox base image (with `extra` Dockerfile lines) pushed to `reg` as
/// `base/NAME:1`; returns its reference.
pub fn push_busybox_base(reg: &TestRegistry, name: &str, extra: &str) -> String {
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(ctx.path(), extra);
    let base = format!("{}/base/{name}:1", reg.addr);
    // A single manifest, as most third-party bases are (no index of
    // attestations: tests read its manifest and its one platform).
    let mut args = reg_args(reg);
    args.push("--provenance=false".into());
    build(ctx.path(), &base, &args);
    base
}

pub fn reg_args(reg: &TestRegistry) -> Vec<String> {
    vec!["--insecure-registry".into(), reg.addr.clone()]
}

pub fn build(ctx: &Path, dest: &str, extra: &[String]) -> String {
    kiln_build(ctx)
        .args(["-d", dest])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .ok()
}

#[test]
fn busybox_base_pushed_then_an_image_from_it() {
    let reg = TestRegistry::start(Options::default());
    let base_ctx = tempfile::tempdir().unwrap();
    busybox_context(base_ctx.path(), "");
    let base = format!("{}/base/busybox:1", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));

    let app_ctx = tempfile::tempdir().unwrap();
    write(&app_ctx.path().join("msg.txt"), "hi from the context\n");
    write(&app_ctx.path().join("Dockerfile"), APP);
    let app = format!("{}/apps/app:1", reg.addr);
    let names = app_ctx.path().join("names");
    let mut args = reg_args(&reg);
    args.extend(["--build-arg".into(), format!("BASE={base}")]);
    args.extend([
        "--image-name-with-digest-file".into(),
        names.to_str().unwrap().into(),
    ]);
    build(app_ctx.path(), &app, &args);

    // skopeo reads what was pushed.
    let info = json(&run_ok(
        tool("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{app}")),
    ));
    let digest = info["Digest"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(&names).unwrap(),
        format!("{}/apps/app@{digest}\n", reg.addr)
    );
    assert_eq!(
        info["Layers"].as_array().unwrap().len(),
        5,
        "base + WORKDIR + 3 COPY: {info}"
    );
    let env: Vec<String> = serde_json::from_value(info["Env"].clone()).unwrap();
    assert!(
        env.contains(&"GREETING=hello-from-kiln".to_string()),
        "{env:?}"
    );

    // skopeo copy to an OCI layout, umoci unpack: file by file.
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    run_ok(
        tool("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{app}"))
            .arg(format!("oci:{}:latest", layout.display())),
    );
    let bundle = umoci_unpack(&layout, "latest");
    let root = bundle.path().join("b/rootfs");
    assert_eq!(
        std::fs::read(root.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app/msg.txt")).unwrap(),
        "hi from the context\n"
    );
    assert!(std::fs::read_to_string(root.join("copied-passwd"))
        .unwrap()
        .contains("app:x:1000"));
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(root.join("home/app/owned.txt")).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (1000, 1000),
            "--chown by name from the base image's passwd"
        );
    }
    let config = skopeo_inspect(&format!("oci:{}:latest", layout.display()), true);
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["config"]["Cmd"][2],
        "cat /app/msg.txt; echo $GREETING; pwd"
    );
    assert_eq!(
        config["history"].as_array().unwrap().len(),
        2 + 6,
        "base history (ADD, CMD) kept"
    );

    // The same image again: no blob is uploaded.
    let uploads = reg.requests("PUT", "/blobs/uploads/");
    let log = build(app_ctx.path(), &app, &args);
    assert_eq!(reg.requests("PUT", "/blobs/uploads/"), uploads, "{log}");
    assert!(log.contains("0 blobs uploaded"), "{log}");

    // To another repository: the base layer is mounted, not uploaded.
    let other = format!("{}/other/app:1", reg.addr);
    let log = build(app_ctx.path(), &other, &args);
    assert!(reg.requests("POST", "mount=") >= 1, "{log}");
    assert!(log.contains("1 mounted"), "{log}");

    // docker pulls it from the registry and runs it as the Dockerfile says.
    if let Some(mut d) = docker() {
        run_ok(d.arg("pull").arg(&app));
        let said = run_ok(docker().unwrap().args(["run", "--rm"]).arg(&app));
        assert_eq!(said, "hi from the context\nhello-from-kiln\n/app\n");
        let _ = docker().unwrap().args(["rmi", "-f"]).arg(&app).output();
    }
}

#[test]
fn onbuild_triggers_of_a_base_image_run() {
    let reg = TestRegistry::start(Options::default());
    let base_ctx = tempfile::tempdir().unwrap();
    busybox_context(
        base_ctx.path(),
        "ONBUILD COPY trigger.txt /from-trigger.txt\n",
    );
    let base = format!("{}/base/onbuild:1", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));
    // The base as Docker schema 2 (docker's media types), as registries
    // holding docker-built images serve it.
    let v2s2 = format!("{}/base/onbuild-v2s2:1", reg.addr);
    run_ok(
        tool("skopeo")
            .args([
                "copy",
                "--format",
                "v2s2",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{base}"))
            .arg(format!("docker://{v2s2}")),
    );
    let raw = run_ok(
        tool("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{v2s2}")),
    );
    assert!(
        raw.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{raw}"
    );
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("trigger.txt"), "triggered\n");
    write(&ctx.path().join("Dockerfile"), &format!("FROM {v2s2}\n"));
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    kiln_build(ctx.path())
        .oci_layout(&layout)
        .args(reg_args(&reg))
        .ok();
    let bundle = umoci_unpack(&layout, "latest");
    assert_eq!(
        std::fs::read_to_string(bundle.path().join("b/rootfs/from-trigger.txt")).unwrap(),
        "triggered\n"
    );
    let config = skopeo_inspect(&format!("oci:{}:latest", layout.display()), true);
    assert!(
        config["config"]["OnBuild"].is_null(),
        "triggers are consumed"
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/sh"]),
        "config inherited"
    );
}

#[test]
fn credentials_from_docker_config_over_tls() {
    let reg = TestRegistry::start(Options {
        htpasswd: Some(("builder".into(), "Pa55-w0rd".into())),
        tls: true,
        ..Default::default()
    });
    let docker_config = tempfile::tempdir().unwrap();
    let set_password = |password: &str| {
        use base64_auth::encode;
        write(
            &docker_config.path().join("config.json"),
            &format!(
                r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
                reg.addr,
                encode(&format!("builder:{password}"))
            ),
        );
    };
    let hello = repo_root().join("fixtures/hello");
    let dest = format!("{}/private/hello:1", reg.addr);
    let ca = format!("{}={}", reg.addr, reg.ca.as_ref().unwrap().display());
    let push = |extra: &[&str]| {
        kiln()
            .args([
                "build",
                "-c",
                hello.to_str().unwrap(),
                "-d",
                &dest,
                "-v",
                "trace",
                "--push-retry",
                "0",
            ])
            .args(extra)
            .env("DOCKER_CONFIG", docker_config.path())
            .output()
            .unwrap()
    };
    set_password("Pa55-w0rd");
    let ok = push(&["--registry-certificate", &ca]);
    let log = String::from_utf8_lossy(&ok.stderr).into_owned();
    assert!(ok.status.success(), "{log}");
    assert!(
        !log.contains("Pa55-w0rd") && !log.contains(&base64_auth::encode("builder:Pa55-w0rd")),
        "secret in the log"
    );
    // --skip-tls-verify-registry instead of the CA.
    let ok = push(&["--skip-tls-verify-registry", &reg.addr]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = push(&["--skip-tls-verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Untrusted certificate: refused.
    let bad = push(&[]);
    assert_eq!(bad.status.code(), Some(4), "a registry error");
    // Wrong password: one clear error naming the registry, no secret.
    set_password("not-it");
    let bad = push(&["--registry-certificate", &ca]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(4), "a credential error: {err}");
    assert!(
        err.contains(&format!("authentication to {} failed", reg.addr)),
        "{err}"
    );
    assert!(!err.contains("not-it"), "secret in the log: {err}");
    let info = json(&run_ok(
        tool("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                "builder:Pa55-w0rd",
            ])
            .arg(format!("docker://{dest}")),
    ));
    assert_eq!(
        info["Labels"]["org.opencontainers.image.title"],
        "kiln hello"
    );
}

/// Standard base64 for a config.json `auth` field.
mod base64_auth {
    pub fn encode(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Air-gapped: `FROM kiln-test/busybox` (a docker.io name) is served by a
/// --registry-mirror; without fallback docker.io is never asked. Two builds
/// at once share one fresh --kiln-dir safely.
#[test]
fn registry_mirror_and_concurrent_builds_share_the_layer_store() {
    let reg = TestRegistry::start(Options::default());
    let base_ctx = tempfile::tempdir().unwrap();
    busybox_context(base_ctx.path(), "");
    build(
        base_ctx.path(),
        &format!("{}/kiln-test/busybox:1", reg.addr),
        &reg_args(&reg),
    );

    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        "FROM kiln-test/busybox:1\nCOPY Dockerfile /\n",
    );
    let kiln_dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|i| {
            kiln()
                .args(["build", "-c", ctx.path().to_str().unwrap()])
                .arg("--oci-layout-path")
                .arg(out.path().join(format!("l{i}")))
                .args([
                    "--registry-mirror",
                    &reg.addr,
                    "--skip-default-registry-fallback",
                ])
                .args(reg_args(&reg))
                .arg("--kiln-dir")
                .arg(kiln_dir.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let d0 = skopeo_inspect(
        &format!("oci:{}:latest", out.path().join("l0").display()),
        false,
    );
    let d1 = skopeo_inspect(
        &format!("oci:{}:latest", out.path().join("l1").display()),
        false,
    );
    assert_eq!(d0["Digest"], d1["Digest"]);
    // One extracted copy of the base layer, no temporary leftovers.
    let layers: Vec<String> = std::fs::read_dir(kiln_dir.path().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert!(!layers[0].starts_with(".tmp"), "{layers:?}");
    let bundle = umoci_unpack(&out.path().join("l0"), "latest");
    assert!(bundle.path().join("b/rootfs/bin/busybox").is_file());
}

/// credHelpers: an external docker-credential-* program gives the password.
#[test]
fn credential_helper_program() {
    let reg = TestRegistry::start(Options {
        htpasswd: Some(("helped".into(), "from-helper".into())),
        tls: true,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    write(
        &bin.join("docker-credential-kilntest"),
        "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"helped\\\",\\\"Secret\\\":\\\"from-helper\\\"}\"\n",
    );
    chmod(&bin.join("docker-credential-kilntest"), 0o755);
    write(
        &dir.path().join("config.json"),
        &format!(r#"{{"credHelpers": {{"{}": "kilntest"}}}}"#, reg.addr),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let hello = repo_root().join("fixtures/hello");
    let names = dir.path().join("names");
    let err = kiln_build(&hello)
        .arg("-d")
        .arg(format!("{}/helped/hello:v2", reg.addr))
        .args(["--skip-tls-verify-registry", &reg.addr])
        .arg("--image-name-tag-with-digest-file")
        .arg(&names)
        .env("DOCKER_CONFIG", dir.path())
        .env("PATH", path)
        .ok();
    assert!(!err.contains("from-helper"));
    let line = std::fs::read_to_string(&names).unwrap();
    assert!(
        line.starts_with(&format!("{}/helped/hello:v2@sha256:", reg.addr)),
        "{line}"
    );
}

/// The target stage's new layers upload while they are written (one
/// streamed PATCH each; an earlier stage's layer is not pushed), and the
/// image is whole. A registry that refuses streamed uploads (or a proxy
/// that breaks them) gets the layers from the push instead.
#[test]
fn layers_upload_as_they_are_written_else_with_the_push() {
    use crate::support::{Fault, FaultProxy};
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-stream", "");
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM {base} AS tool\nRUN echo tool > /tool\n\
             FROM {base}\nCOPY --from=tool /tool /tool\nRUN echo app > /app\n"
        ),
    );
    let dest = format!("{}/stream/app:1", reg.addr);
    let log = build(ctx.path(), &dest, &reg_args(&reg));
    assert_eq!(
        log.matches("as it was written").count(),
        2,
        "the final stage's two layers\n{log}"
    );
    assert_eq!(
        reg.requests("PATCH", "/v2/stream/app/blobs/uploads/"),
        2,
        "{log}"
    );
    // skopeo copies it: every blob is there and matches its digest.
    let out = tempfile::tempdir().unwrap();
    let copy = |from: &str, to: &str| {
        run_ok(tool("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{from}"),
            &format!("oci:{}:{to}", out.path().display()),
        ]))
    };
    copy(&dest, "streamed");
    let manifest = skopeo_inspect(&format!("oci:{}:streamed", out.path().display()), false);
    assert_eq!(
        manifest["Layers"].as_array().unwrap().len(),
        3,
        "{manifest}"
    );

    // Streamed uploads refused: the push uploads the layers.
    let proxy = FaultProxy::start(&reg.addr, "PATCH ", Fault::Status500, 100);
    let refused = format!("{}/stream/refused:1", proxy.addr);
    let mut args = reg_args(&reg);
    args.extend(["--insecure-registry".to_string(), proxy.addr.clone()]);
    let log = build(ctx.path(), &refused, &args);
    assert!(
        proxy
            .faults_served
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2,
        "{log}"
    );
    assert!(!log.contains("as it was written"), "{log}");
    // Read from the registry behind the proxy.
    copy(&format!("{}/stream/refused:1", reg.addr), "refused");
    let again = skopeo_inspect(&format!("oci:{}:refused", out.path().display()), false);
    assert_eq!(again["Layers"], manifest["Layers"], "the same layers");

    // A streamed upload cut off half way: the same.
    let proxy = FaultProxy::start(&reg.addr, "PATCH ", Fault::ResetMidUpload, 100);
    let cut = format!("{}/stream/cut:1", proxy.addr);
    let mut args = reg_args(&reg);
    args.extend(["--insecure-registry".to_string(), proxy.addr.clone()]);
    let log = build(ctx.path(), &cut, &args);
    assert!(!log.contains("as it was written"), "{log}");
    copy(&format!("{}/stream/cut:1", reg.addr), "cut");
    let cut_layers = skopeo_inspect(&format!("oci:{}:cut", out.path().display()), false);
    assert_eq!(cut_layers["Layers"], manifest["Layers"], "the same layers");

    // A build that fails after a layer was written (and streamed: the
    // failing step gives it a second) stores nothing.
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN echo written > /written\nRUN sleep 1; false\n"),
    );
    let failed = format!("{}/stream/failed:1", reg.addr);
    let (_, log) = kiln_build(ctx.path())
        .args(["-d", &failed])
        .args(reg_args(&reg))
        .fails();
    assert!(reg.requests("PATCH", "/v2/stream/failed/") >= 1, "{log}");
    assert_eq!(reg.requests("PUT", "/v2/stream/failed/"), 0, "{log}");
}
