//! kiln against docker: docker loads and runs what kiln built, and docker's
//! own BuildKit build of the same context gives the same files and config.

use crate::common::*;

#[test]
fn docker_loads_and_runs_the_hello_image() {
    let Some(_) = docker() else { return };
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("hello.tar");
    let tag = "kiln-e2e/hello:test";
    kiln_ok(&[
        "build",
        // As docker builds below: nothing from earlier builds' cache
        // (a cached COPY keeps the mtimes of the build that made it).
        "--no-cache",
        "-c",
        repo_root().join("fixtures/hello").to_str().unwrap(),
        "--tar-path",
        tar.to_str().unwrap(),
        "-d",
        tag,
        "--no-push",
    ]);
    let loaded = run_ok(docker().unwrap().arg("load").arg("-i").arg(&tar));
    assert!(loaded.contains(tag), "docker load said: {loaded}");
    let said = run_ok(docker().unwrap().args(["run", "--rm", tag]));
    assert_eq!(said, "Hello from kiln!\n");
    let _ = docker().unwrap().args(["rmi", "-f", tag]).output();
}

#[test]
fn rich_context_matches_docker_buildkit() {
    let Some(_) = docker() else { return };
    let ctx = tempfile::tempdir().unwrap();
    rich_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let kiln_tar = out.path().join("kiln.tar");
    kiln_ok(&[
        "build",
        "--no-cache",
        "-c",
        ctx.path().to_str().unwrap(),
        "--tar-path",
        kiln_tar.to_str().unwrap(),
    ]);

    let tag = "kiln-e2e/rich:docker";
    let docker_tar = out.path().join("docker.tar");
    if !docker_buildkit_save(ctx.path(), tag, &[], &docker_tar) {
        return;
    }

    let (kfs, kcfg) = docker_archive_fs(&kiln_tar);
    let (dfs, dcfg) = docker_archive_fs(&docker_tar);
    // Directories get the build's time in both builders.
    let diffs = differences(
        &without_times(&kfs, true),
        &without_times(&dfs, true),
        ("kiln", "docker"),
    );
    assert!(
        diffs.is_empty(),
        "file systems differ:\n{}",
        diffs.join("\n")
    );
    assert!(kfs.contains_key("ign/keep/k") && !kfs.contains_key("secret.txt"));

    for key in [
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ] {
        assert_eq!(kcfg["config"][key], dcfg["config"][key], "config.{key}");
    }
    assert_eq!(kcfg["architecture"], dcfg["architecture"]);
    assert_eq!(kcfg["os"], dcfg["os"]);
    assert_eq!(kcfg["author"], dcfg["author"]);
    let layers = |c: &serde_json::Value| c["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(layers(&kcfg), layers(&dcfg), "number of layers");
    let flags = |c: &serde_json::Value| -> Vec<bool> {
        c["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
            .collect()
    };
    assert_eq!(
        flags(&kcfg),
        flags(&dcfg),
        "history entries and their empty_layer flags"
    );
}

/// An image of kiln itself (its binary and the shared libraries it links),
/// built by kiln and loaded into docker as `tag`.
pub fn load_kiln_image(tag: &str) {
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("ctx/rootfs");
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy(&binary, rootfs.join("kiln")).unwrap();
    // Shared libraries as ldd lists them, at the same absolute paths.
    let ldd = run_ok(std::process::Command::new("ldd").arg(&binary));
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let dst = rootfs.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dst).unwrap_or_else(|e| panic!("{lib}: {e}"));
    }
    write(
        &work.path().join("ctx/Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nWORKDIR /tmp\nENV TMPDIR=/tmp\nENTRYPOINT [\"/kiln\"]\n",
    );
    let tar = work.path().join("kiln.tar");
    kiln_ok(&[
        "build",
        "--no-cache",
        "-c",
        work.path().join("ctx").to_str().unwrap(),
        "--tar-path",
        tar.to_str().unwrap(),
        "-d",
        tag,
        "--no-push",
    ]);
    run_ok(docker().unwrap().arg("load").arg("-i").arg(&tar));
}

/// The Kubernetes-pod case: kiln builds an image of itself (its binary and
/// the shared libraries it links), and that image, run in a default
/// container (no --privileged), builds the hello fixture.
#[test]
fn kiln_builds_inside_an_unprivileged_container() {
    let Some(_) = docker() else { return };
    let work = tempfile::tempdir().unwrap();
    let tag = "kiln-e2e/kiln:test";
    load_kiln_image(tag);
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let hello = repo_root().join("fixtures/hello");
    let log = run_ok(
        docker()
            .unwrap()
            .args(["run", "--rm", "-v"])
            .arg(format!("{}:/ctx:ro", hello.display()))
            .arg("-v")
            .arg(format!("{}:/out", out.display()))
            .args([
                tag,
                "build",
                "-c",
                "/ctx",
                "--oci-layout-path",
                "/out/layout",
                "--digest-file",
                "/out/digest",
            ]),
    );
    let _ = docker().unwrap().args(["rmi", "-f", tag]).output();
    assert!(log.is_empty(), "kiln logs to stderr, not stdout: {log}");
    let digest = std::fs::read_to_string(out.join("digest")).unwrap();
    let info = skopeo_inspect(
        &format!("oci:{}:latest", out.join("layout").display()),
        false,
    );
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(
        info["Labels"]["org.opencontainers.image.title"],
        "kiln hello"
    );
}
