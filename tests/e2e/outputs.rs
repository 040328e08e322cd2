//! What kiln writes, read back by skopeo and umoci: OCI layout, docker
//! archive, digest file, reproducible digests.

use crate::common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn build_rich(ctx: &Path, layout: &Path, extra_env: &[(&str, &str)], extra: &[&str]) -> String {
    let digest_file = layout.with_extension("digest");
    let mut build = kiln_build(ctx)
        .oci_layout(layout)
        .arg("--digest-file")
        .arg(&digest_file)
        .args(extra);
    for (k, v) in extra_env {
        build = build.env(k, v);
    }
    build.ok();
    std::fs::read_to_string(&digest_file).unwrap()
}

#[test]
fn hello_oci_layout_is_read_by_skopeo_and_umoci() {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let digest_file = out.path().join("digest");
    kiln_ok(&[
        "build",
        "-c",
        repo_root().join("fixtures/hello").to_str().unwrap(),
        "--oci-layout-path",
        layout.to_str().unwrap(),
        "--digest-file",
        digest_file.to_str().unwrap(),
        "--label",
        "extra=yes",
    ]);
    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );

    let reference = format!("oci:{}:latest", layout.display());
    let info = skopeo_inspect(&reference, false);
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Os"], "linux");
    assert_eq!(
        info["Labels"]["org.opencontainers.image.title"],
        "kiln hello"
    );
    assert_eq!(info["Labels"]["extra"], "yes");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
    let config = skopeo_inspect(&reference, true);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/hello"]));
    assert_eq!(config["history"].as_array().unwrap().len(), 3);

    let bundle = umoci_unpack(&layout, "latest");
    let hello = bundle.path().join("b/rootfs/hello");
    let md = std::fs::metadata(&hello).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read(&hello).unwrap(),
        std::fs::read(repo_root().join("fixtures/hello/hello")).unwrap()
    );
    // .dockerignore kept the source out.
    assert!(!bundle.path().join("b/rootfs/hello.S").exists());
}

#[test]
fn docker_archive_is_read_by_skopeo() {
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("image.tar");
    let ctx = tempfile::tempdir().unwrap();
    rich_context(ctx.path());
    kiln_ok(&[
        "build",
        "-c",
        ctx.path().to_str().unwrap(),
        "--tar-path",
        tar.to_str().unwrap(),
        "-d",
        "example.com/team/rich",
        "--no-push",
    ]);
    let reference = format!("docker-archive:{}", tar.display());
    let info = skopeo_inspect(&reference, false);
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let manifest = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
        .map(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            json(&s)
        })
        .expect("manifest.json");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["example.com/team/rich:latest"])
    );
    assert_eq!(info["Layers"].as_array().unwrap().len(), 19);
    // skopeo recomputes every layer's digest against the config's diff_ids.
    let copy = out.path().join("copied");
    run_ok(
        tool("skopeo")
            .arg("copy")
            .arg(&reference)
            .arg(format!("oci:{}:copied", copy.display())),
    );
    let config = skopeo_inspect(&format!("oci:{}:copied", copy.display()), true);
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["WorkingDir"], "/home/app");
}

/// Files, modes, owners, symlinks and hard links of the rich context, as
/// umoci unpacks them (the values are docker's, see docker.rs).
#[test]
fn rich_image_unpacked_by_umoci() {
    let ctx = tempfile::tempdir().unwrap();
    rich_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    build_rich(ctx.path(), &layout, &[], &[]);
    let bundle = umoci_unpack(&layout, "latest");
    let root = bundle.path().join("b/rootfs");
    let md =
        |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let owners = is_root();
    let check = |p: &str, mode: u32, uid: u32, gid: u32| {
        let m = md(p);
        assert_eq!(m.mode() & 0o7777, mode, "{p} mode");
        if owners {
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{p} owner");
        }
    };
    check("t1", 0o755, 0, 0);
    check("t1/a", 0o600, 0, 0);
    check("t1/sub", 0o700, 0, 0);
    check("owned", 0o755, 1000, 50);
    check("owned/sub/b", 0o644, 1000, 50);
    check("p1", 0o755, 5, 6);
    check("p1/p2/f", 0o600, 5, 6);
    check("chm/b", 0o751, 0, 0);
    check("x/tgz/inner/f", 0o644, 7, 8);
    check("x/tar/inner", 0o755, 7, 8);
    check("home/app", 0o755, 1000, 1001);
    check("home/app/rel", 0o644, 0, 0);
    check("fromowned/b", 0o644, 1000, 50);
    assert_eq!(
        std::fs::read_link(root.join("t1/link")).unwrap().to_str(),
        Some("a")
    );
    assert_eq!(
        std::fs::read_link(root.join("x/txz/l")).unwrap().to_str(),
        Some("inner/f")
    );
    assert_eq!(md("t1/a").ino(), md("t1/hardlink").ino(), "hard link kept");
    assert_ne!(md("files/a").ino(), md("files/link").ino());
    assert!(
        md("files/link").file_type().is_file(),
        "a named symlink source is followed"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("x/tbz/inner/f")).unwrap(),
        "in\n"
    );
    assert_eq!(
        md("x/tgz/inner/f").mtime(),
        1_600_000_000,
        "archive times kept"
    );
    assert!(root.join("ign/keep/k").exists());
    assert!(!root.join("ign/drop").exists());
    assert!(!root.join("secret.txt").exists());
    assert!(root.join("globbed/a.tgz").is_file(), "COPY never extracts");
    assert!(
        root.join("x/tgz/a").is_file(),
        "a file copied into an extracted archive's directory"
    );
}

#[test]
fn source_date_epoch_gives_the_same_digest_twice() {
    let ctx = tempfile::tempdir().unwrap();
    rich_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let first = build_rich(ctx.path(), &out.path().join("one"), &env, &[]);
    // Newer times in the context are clamped: touching a file changes nothing.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&ctx.path().join("tree/sub/b"), "two\n");
    let second = build_rich(ctx.path(), &out.path().join("two"), &env, &[]);
    assert_eq!(first, second);
    let config = skopeo_inspect(
        &format!("oci:{}:latest", out.path().join("one").display()),
        true,
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    // A changed file changes the digest.
    write(&ctx.path().join("tree/sub/b"), "three\n");
    let third = build_rich(ctx.path(), &out.path().join("three"), &env, &[]);
    assert_ne!(first, third);
    // --reproducible alone (times 0) is reproducible too.
    let r1 = build_rich(ctx.path(), &out.path().join("r1"), &[], &["--reproducible"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r2 = build_rich(ctx.path(), &out.path().join("r2"), &[], &["--reproducible"]);
    assert_eq!(r1, r2);
    // Without either, the build time is recorded and digests differ.
    let n1 = build_rich(ctx.path(), &out.path().join("n1"), &[], &[]);
    assert_ne!(n1, r1);
}

#[test]
fn layout_keeps_other_references() {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let hello = repo_root().join("fixtures/hello");
    for tag in ["one", "two", "one"] {
        kiln_ok(&[
            "build",
            "-c",
            hello.to_str().unwrap(),
            "--oci-layout-path",
            layout.to_str().unwrap(),
            "-d",
            &format!("kiln/hello:{tag}"),
            "--no-push",
            "--label",
            &format!("tag={tag}"),
        ]);
    }
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, vec!["two", "one"]);
    for tag in ["one", "two"] {
        let info = skopeo_inspect(&format!("oci:{}:{tag}", layout.display()), false);
        assert_eq!(info["Labels"]["tag"], tag);
    }
}

/// kiln needs no privilege for builds without RUN: as user nobody it reads
/// a context and writes an image that skopeo accepts.
#[test]
fn builds_as_an_unprivileged_user() {
    if !is_root() {
        eprintln!("already unprivileged: the plain tests cover this case");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    chmod(work.path(), 0o777);
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(repo_root().join("fixtures/hello/hello"), ctx.join("hello")).unwrap();
    std::fs::copy(
        repo_root().join("fixtures/hello/Dockerfile"),
        ctx.join("Dockerfile"),
    )
    .unwrap();
    chmod(&ctx, 0o755);
    let layout = work.path().join("layout");
    kiln_build_as_nobody(&ctx, work.path())
        .oci_layout(&layout)
        .env("TMPDIR", work.path())
        .ok();
    assert_eq!(
        std::fs::metadata(layout.join("index.json")).unwrap().uid(),
        65534
    );
    let info = skopeo_inspect(&format!("oci:{}:latest", layout.display()), false);
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
}

/// Extended attributes of context files (user.*, file capabilities) travel
/// into the layer as PAX `SCHILY.xattr.*` records.
#[test]
fn xattrs_are_kept_in_layers() {
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("tool"), "bin");
    let set = std::process::Command::new("python3")
        .arg("-c")
        .arg("import os,sys; os.setxattr(sys.argv[1], 'user.kiln', b'hello')")
        .arg(ctx.path().join("tool"))
        .status()
        .unwrap();
    if !set.success() {
        eprintln!("!!!!!!!! SKIPPED: this file system does not take user xattrs !!!!!!!!");
        return;
    }
    write(
        &ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY tool /tool\n",
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("image.tar");
    kiln_ok(&[
        "build",
        "-c",
        ctx.path().to_str().unwrap(),
        "--tar-path",
        tar.to_str().unwrap(),
    ]);
    let unpacked = tempfile::tempdir().unwrap();
    run_ok(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(unpacked.path()),
    );
    let manifest = json(&std::fs::read_to_string(unpacked.path().join("manifest.json")).unwrap());
    let layer = unpacked
        .path()
        .join(manifest[0]["Layers"][0].as_str().unwrap());
    let mut archive = tar::Archive::new(std::fs::File::open(layer).unwrap());
    let mut found = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("tool") {
            for ext in e.pax_extensions().unwrap().expect("PAX records") {
                let ext = ext.unwrap();
                if ext.key().unwrap() == "SCHILY.xattr.user.kiln" {
                    found = Some(ext.value().unwrap().to_string());
                }
            }
        }
    }
    assert_eq!(found.as_deref(), Some("hello"));
}
