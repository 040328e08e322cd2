//! Base layers are downloaded only when something reads them: a step that
//! needs the files, or an output that must hold the bytes. A build whose
//! RUN steps all hit the cache, or a push to a registry that has the blob
//! or can mount it, downloads no base layer.

use crate::common::*;
use crate::registry::{push_busybox_base, reg_args};
use crate::support::{Options, TestRegistry};

#[test]
fn base_layers_are_fetched_only_when_read() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-lazy", "");
    let raw =
        run_ok(tool("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{base}")]));
    let layer = json(&raw)["Layers"][0].as_str().unwrap().to_string();
    let gets = || reg.requests("GET", &format!("/blobs/{layer}"));

    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN echo built > /built\nENV A=1\n"),
    );
    let cached = |dest: &str| {
        let state = tempfile::tempdir().unwrap(); // an empty machine
        kiln_build(ctx.path())
            .args(["-d", dest])
            .args(reg_args(&reg))
            .args(["--cache", "--cache-repo"])
            .arg(format!("{}/app/lazy-cache", reg.addr))
            .arg("--kiln-dir")
            .arg(state.path())
            .ok()
    };
    let before = gets();
    cached(&format!("{}/app/lazy:1", reg.addr));
    assert_eq!(gets(), before + 1, "the RUN reads the base: one download");

    // The RUN hits the cache on an empty machine; the push finds the base
    // layer in the repository (or mounts it): no base layer is read.
    let log = cached(&format!("{}/app/lazy:2", reg.addr));
    assert!(log.contains("cache hit"), "{log}");
    let log = cached(&format!("{}/other/lazy:1", reg.addr));
    assert_eq!(gets(), before + 1, "no base layer was downloaded:\n{log}");

    // An OCI layout must hold the bytes: they are fetched, and the image
    // is whole (umoci unpacks it).
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(reg_args(&reg))
        .args(["--cache", "--cache-repo"])
        .arg(format!("{}/app/lazy-cache", reg.addr))
        .arg("--kiln-dir")
        .arg(state.path())
        .ok();
    assert_eq!(gets(), before + 2);
    let bundle = umoci_unpack(&out.path().join("l"), "latest");
    let root = bundle.path().join("b/rootfs");
    assert_eq!(
        std::fs::read_to_string(root.join("built")).unwrap(),
        "built\n"
    );
    assert!(root.join("bin/busybox").is_file());
}
