//! kiln against docker: docker loads and runs what kiln built, and docker's
//! own BuildKit build of the same context gives the same files and config.

use crate::common::*;
use std::collections::BTreeSet;

#[test]
fn docker_loads_and_runs_the_hello_image() {
    let Some(_) = docker() else { return };
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("hello.tar");
    let tag = "kiln-e2e/hello:test";
    kiln_ok(&[
        "build",
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
        "-c",
        ctx.path().to_str().unwrap(),
        "--tar-path",
        kiln_tar.to_str().unwrap(),
    ]);

    let tag = "kiln-e2e/rich:docker";
    let built = docker()
        .unwrap()
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--no-cache", "-q", "-t", tag])
        .arg(ctx.path())
        .output()
        .unwrap();
    if !built.status.success() {
        let err = String::from_utf8_lossy(&built.stderr);
        if err.contains("buildx") {
            eprintln!("!!!!!!!! SKIPPED: this docker client needs the buildx plugin for BuildKit: {err} !!!!!!!!");
            return;
        }
        panic!("docker build failed: {err}");
    }
    let docker_tar = out.path().join("docker.tar");
    run_ok(
        docker()
            .unwrap()
            .arg("save")
            .arg("-o")
            .arg(&docker_tar)
            .arg(tag),
    );
    let _ = docker().unwrap().args(["rmi", "-f", tag]).output();

    let (kfs, kcfg) = docker_archive_fs(&kiln_tar);
    let (dfs, dcfg) = docker_archive_fs(&docker_tar);
    let paths: BTreeSet<&String> = kfs.keys().chain(dfs.keys()).collect();
    let mut diffs = Vec::new();
    for p in paths {
        match (kfs.get(p), dfs.get(p)) {
            (Some(k), Some(d)) => {
                let mut k = k.clone();
                let mut d = d.clone();
                if k.kind == 'd' {
                    // Directories get the build's time in both builders.
                    k.mtime = 0;
                    d.mtime = 0;
                }
                if k != d {
                    diffs.push(format!("{p}:\n  kiln   {k:?}\n  docker {d:?}"));
                }
            }
            (k, d) => diffs.push(format!("{p}: kiln {k:?} docker {d:?}")),
        }
    }
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
