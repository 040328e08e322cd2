//! SBOM and provenance attestations: what the scanners find against what
//! dpkg itself lists, SPDX validity by pyspdxtools (PyPI's spdx-tools),
//! the layout in the index against what BuildKit v0.32.2 pushes
//! (fixtures/buildkit-attestation), the provenance's sources, secrets
//! kept out, and reproducible bytes.

use crate::common::*;
use crate::registry::{busybox_context, push_busybox_base, reg_args};
use crate::support::{Options, TestRegistry};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// pyspdxtools from the venv the README's test command makes.
fn pyspdxtools() -> PathBuf {
    let p = std::env::var_os("KILN_PYSPDXTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-deps/spdx-tools/bin/pyspdxtools"));
    assert!(
        p.is_file(),
        "{} is missing: the README's test command installs spdx-tools there",
        p.display()
    );
    p
}

/// The statement's predicate validates as SPDX 2.3.
fn assert_valid_spdx(statement: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("doc.spdx.json");
    std::fs::write(&doc, statement["predicate"].to_string()).unwrap();
    let out = Command::new(pyspdxtools())
        .arg("-i")
        .arg(&doc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyspdxtools refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(path: &Path) -> Value {
    json(&std::fs::read_to_string(path).unwrap())
}

/// The purl of each package in an SPDX document.
fn purls(statement: &Value) -> BTreeSet<String> {
    statement["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().cloned().unwrap_or_default())
        .map(|r| r["referenceLocator"].as_str().unwrap().to_string())
        .collect()
}

/// The SPDX package `pick` chooses.
fn spdx_package(statement: &Value, pick: impl Fn(&Value) -> bool) -> &Value {
    statement["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| pick(p))
        .unwrap()
}

/// A local apt repository holding Debian's `hello` package (downloaded
/// once into the target directory).
fn hello_repository(into: &Path) {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("apt-hello");
    if !cache.is_dir() {
        let tmp = cache.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        run_ok(
            Command::new("apt-get")
                .current_dir(&tmp)
                .args(["download", "-q", "hello"]),
        );
        std::fs::rename(&tmp, &cache).unwrap();
    }
    std::fs::create_dir_all(into).unwrap();
    for e in std::fs::read_dir(&cache).unwrap().flatten() {
        std::fs::copy(e.path(), into.join(e.file_name())).unwrap();
    }
    apt_packages_index(into);
}

/// FROM a debootstrapped bookworm, `apt-get install hello` from a file
/// repository: the SBOM lists exactly what `dpkg-query -W` lists in the
/// image, with versions and purls; the document validates.
#[test]
fn sbom_of_a_debian_image_lists_what_dpkg_lists() {
    let ctx = crate::debian::debian_base_context(
        "COPY repo /repo\n\
         RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \
         && echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list.d/local.list \
         && apt-get -o APT::Sandbox::User=root update -q \
         && apt-get -o APT::Sandbox::User=root install -y -q --no-install-recommends hello \
         && rm -rf /var/lib/apt/lists/*\n",
    );
    hello_repository(&ctx.path().join("repo"));
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let statements = out.path().join("sbom");
    kiln_build(ctx.path())
        .oci_layout(&layout)
        .args(["--sbom", "--sbom-output"])
        .arg(&statements)
        .ok();
    let sbom = read_json(&statements.join("sbom.spdx.json"));
    assert_valid_spdx(&sbom);

    // dpkg's own answer, from the image as umoci unpacks it (umoci takes
    // one manifest: skopeo picks this platform's image out of the index).
    let single = out.path().join("single");
    run_ok(tool("skopeo").args([
        "copy",
        &format!("oci:{}:latest", layout.display()),
        &format!("oci:{}:latest", single.display()),
    ]));
    let bundle = umoci_unpack(&single, "latest");
    let admindir = bundle.path().join("b/rootfs/var/lib/dpkg");
    let listed = run_ok(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", admindir.display()))
            .args(["-W", "-f", "${Package}\t${Version}\t${Architecture}\n"]),
    );
    let expected: BTreeSet<String> = listed
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let version = c[1].replace(':', "%3A").replace('+', "%2B");
            let name = c[0].replace('+', "%2B");
            format!(
                "pkg:deb/debian/{name}@{version}?arch={}&distro=debian-12",
                c[2]
            )
        })
        .collect();
    let found: BTreeSet<String> = purls(&sbom)
        .into_iter()
        .filter(|p| p.starts_with("pkg:deb/"))
        .collect();
    assert_eq!(found, expected, "the SBOM's debs against dpkg-query -W");
    assert!(expected
        .iter()
        .any(|p| p.starts_with("pkg:deb/debian/hello@")));
    assert!(expected.len() > 80, "{}", expected.len());
    // hello's files, as its .list names them, with dpkg's MD5s.
    let hello = spdx_package(&sbom, |p| p["name"] == "hello");
    let comment = hello["comment"].as_str().unwrap();
    assert!(comment.contains("/usr/bin/hello MD5:"), "{comment}");
    // Licenses where the package states them machine-readably (bash's
    // DEP-5 copyright), none guessed where it does not (hello's prose).
    assert_eq!(hello["licenseDeclared"], "NOASSERTION");
    let bash = spdx_package(&sbom, |p| p["name"] == "bash");
    assert!(
        bash["licenseDeclared"]
            .as_str()
            .unwrap()
            .contains("GPL-3.0-or-later"),
        "{bash}"
    );
    // The operating system, from /etc/os-release.
    let os = spdx_package(&sbom, |p| p["primaryPackagePurpose"] == "OPERATING-SYSTEM");
    assert_eq!(os["name"], "debian");
    assert_eq!(os["versionInfo"], "12");

    // The same statement is in the layout, attached to the image.
    let index = layout_top(&layout);
    let att = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .unwrap();
    let manifest = layout_json(&layout, att["digest"].as_str().unwrap());
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["annotations"]["in-toto.io/predicate-type"],
        "https://spdx.dev/Document"
    );
    assert_eq!(
        layout_blob(&layout, layer["digest"].as_str().unwrap()),
        std::fs::read(statements.join("sbom.spdx.json")).unwrap()
    );
    // In chroot mode (where namespaces are blocked) the RUN's files reach
    // the scan another way (a diffed root, not an overlay's upper
    // directory): the same packages.
    let chroot = out.path().join("chroot");
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("chroot-layout"))
        .args(["--isolation", "chroot", "--sbom", "--sbom-output"])
        .arg(&chroot)
        .env("KILN_DIR", out.path().join("chroot-state"))
        .ok();
    let again = read_json(&chroot.join("sbom.spdx.json"));
    assert_eq!(purls(&again), purls(&sbom), "chroot mode's SBOM");
}

/// Python distributions and Node packages as installed (dist-info and
/// node_modules), on a busybox base: each listed with its purl.
#[test]
fn python_and_node_packages_are_listed() {
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(
        ctx.path(),
        "COPY site /usr/lib/python3/dist-packages\nCOPY app /app\n",
    );
    let site = ctx.path().join("site");
    write(
        &site.join("requests-2.31.0.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\nbody\n",
    );
    write(
        &site.join("requests-2.31.0.dist-info/RECORD"),
        "requests/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n",
    );
    write(&site.join("requests/__init__.py"), "");
    write(
        &site.join("PyYAML-6.0.1.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: PyYAML\nVersion: 6.0.1\nLicense: MIT\n",
    );
    let nm = ctx.path().join("app/node_modules");
    write(
        &ctx.path().join("app/package.json"),
        r#"{"name":"app","version":"1.0.0"}"#,
    );
    write(
        &nm.join("left-pad/package.json"),
        r#"{"name":"left-pad","version":"1.3.0","license":"WTFPL"}"#,
    );
    write(
        &nm.join("@types/node/package.json"),
        r#"{"name":"@types/node","version":"20.1.0","license":"MIT"}"#,
    );
    write(
        &nm.join("left-pad/node_modules/ms/package.json"),
        r#"{"name":"ms","version":"2.1.3","license":{"type":"MIT"}}"#,
    );
    let out = tempfile::tempdir().unwrap();
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(["--attest", "type=sbom", "--sbom-output"])
        .arg(out.path().join("s"))
        .ok();
    let sbom = read_json(&out.path().join("s/sbom.spdx.json"));
    assert_valid_spdx(&sbom);
    let found = purls(&sbom);
    for want in [
        "pkg:pypi/requests@2.31.0",
        "pkg:pypi/pyyaml@6.0.1",
        "pkg:npm/left-pad@1.3.0",
        "pkg:npm/%40types/node@20.1.0",
        "pkg:npm/ms@2.1.3",
    ] {
        assert!(found.contains(want), "{want} not in {found:?}");
    }
    assert!(
        !found.iter().any(|p| p.starts_with("pkg:npm/app")),
        "{found:?}"
    );
}

/// The parts of a JSON value that name its shape: keys, and the values
/// of the fields that say what a thing is (media types, annotations'
/// keys, predicate types).
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Pushed from a git context with a secret: an index of the image and
/// its attestation manifest laid out as BuildKit's, the provenance names
/// the base image's digest and the context's commit, and the secret is in
/// no attestation byte.
#[test]
fn attestations_are_laid_out_as_buildkit_lays_them_out() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "attest", "");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write(
        &src.join("Dockerfile"),
        &format!(
            "FROM {base}\nARG FLAVOUR=plain\nCOPY hello.txt /\n\
             RUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /len\n"
        ),
    );
    write(&src.join("hello.txt"), "hi\n");
    let (server, commit) = serve_git_repo(work.path());
    let context = format!("http://{}/repo.git#release", server.addr);
    let secret = work.path().join("tok");
    let secret_value = "kiln-e2e-secret-4f1d9c";
    write(&secret, secret_value);
    let dest = format!("{}/apps/attested:1", reg.addr);
    let provenance = work.path().join("prov");
    kiln_test_support::KilnBuild::with_context(env!("CARGO_BIN_EXE_kiln"), &context)
        .env("GIT_PULL_METHOD", "http")
        .args(["-d", &dest])
        .args(reg_args(&reg))
        .args(["--build-arg", "FLAVOUR=spicy", "--provenance=mode=max"])
        .arg(format!("--secret=id=tok,src={}", secret.display()))
        .arg("--provenance-output")
        .arg(&provenance)
        .ok();

    // skopeo copies the whole index (images and attestations) out.
    let copied = work.path().join("copied");
    run_ok(tool("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("oci:{}:x", copied.display()),
    ]));
    let index = layout_top(&copied);
    let bk_index = read_json(&repo_root().join("fixtures/buildkit-attestation/index.json"));
    assert_eq!(index["mediaType"], bk_index["mediaType"]);
    let entries = index["manifests"].as_array().unwrap();
    let bk_entries = bk_index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), bk_entries.len());
    for (k, b) in entries.iter().zip(bk_entries) {
        assert_eq!(keys(k), keys(b), "index entry fields");
        assert_eq!(k["mediaType"], b["mediaType"]);
        assert_eq!(k["platform"].get("os"), b["platform"].get("os"));
        if let Some(a) = b.get("annotations") {
            assert_eq!(keys(&k["annotations"]), keys(a));
            assert_eq!(
                k["annotations"]["vnd.docker.reference.type"],
                a["vnd.docker.reference.type"]
            );
        }
    }
    let image_digest = entries[0]["digest"].as_str().unwrap();
    assert_eq!(
        entries[1]["annotations"]["vnd.docker.reference.digest"],
        image_digest
    );
    let manifest = layout_json(&copied, entries[1]["digest"].as_str().unwrap());
    let bk_manifest =
        read_json(&repo_root().join("fixtures/buildkit-attestation/attestation-manifest.json"));
    assert_eq!(keys(&manifest), keys(&bk_manifest));
    for field in ["mediaType", "artifactType"] {
        assert_eq!(manifest[field], bk_manifest[field], "{field}");
    }
    assert_eq!(
        manifest["config"], bk_manifest["config"],
        "the empty config, as BuildKit's"
    );
    assert_eq!(manifest["subject"]["digest"], image_digest);
    let layer = &manifest["layers"][0];
    assert_eq!(keys(layer), keys(&bk_manifest["layers"][0]));
    assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
    assert_eq!(
        layer["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v1"
    );

    // The statement: BuildKit's fields, this build's sources.
    let statement = layout_json(&copied, layer["digest"].as_str().unwrap());
    let bk = read_json(&repo_root().join("fixtures/buildkit-attestation/provenance-min.json"));
    assert_eq!(keys(&statement), keys(&bk));
    assert_eq!(statement["_type"], bk["_type"]);
    assert_eq!(keys(&statement["predicate"]), keys(&bk["predicate"]));
    let def = &statement["predicate"]["buildDefinition"];
    for k in keys(&bk["predicate"]["buildDefinition"]) {
        assert!(def.get(&k).is_some(), "buildDefinition.{k}");
    }
    assert_eq!(
        statement["subject"][0]["name"],
        format!(
            "pkg:docker/{}/apps/attested@1?platform=linux%2Famd64",
            reg.addr.replace(':', "%3A")
        )
    );
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        image_digest.trim_start_matches("sha256:")
    );
    let base_digest = registry_digest(&base);
    let deps = def["resolvedDependencies"].as_array().unwrap();
    assert!(
        deps.iter().any(
            |d| d["digest"]["sha256"] == base_digest.trim_start_matches("sha256:")
                && d["uri"].as_str().unwrap().contains("/base/attest@1")
        ),
        "the base image by digest in {deps:?}"
    );
    let source = &def["externalParameters"]["configSource"];
    assert_eq!(source["uri"], format!("http://{}/repo.git", server.addr));
    assert_eq!(source["digest"]["sha1"], commit);
    assert_eq!(
        def["externalParameters"]["request"]["args"]["build-arg:FLAVOUR"],
        "spicy"
    );
    assert_eq!(
        def["externalParameters"]["request"]["secrets"][0]["id"],
        "tok"
    );
    let steps = statement["predicate"]["runDetails"]["metadata"]["buildkit_metadata"]["steps"]
        .as_array()
        .unwrap();
    assert!(steps
        .iter()
        .any(|s| s["instruction"].as_str().unwrap().starts_with("RUN")));
    // Not reproducible: whether the cache served each step is said.
    assert!(steps.iter().all(|s| s["cached"].is_boolean()), "{steps:?}");
    // The same bytes --provenance-output wrote.
    assert_eq!(
        std::fs::read(provenance.join("provenance.json")).unwrap(),
        layout_blob(&copied, layer["digest"].as_str().unwrap())
    );
    // No attestation byte holds the secret.
    for d in [
        entries[1]["digest"].as_str().unwrap(),
        layer["digest"].as_str().unwrap(),
    ] {
        let bytes = String::from_utf8_lossy(&layout_blob(&copied, d)).into_owned();
        assert!(!bytes.contains(secret_value), "{d} holds the secret");
    }
}

/// `--reproducible`: the same inputs give the same attestation bytes and
/// the same index digest; a docker archive keeps the image and says the
/// attestations are not there.
#[test]
fn attestations_are_reproducible() {
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(ctx.path(), "RUN echo made > /made\n");
    let mut digests = Vec::new();
    for run in 0..2 {
        let out = tempfile::tempdir().unwrap();
        let digest = out.path().join("digest");
        kiln_build(ctx.path())
            .oci_layout(&out.path().join("l"))
            .args(["--reproducible", "--sbom", "--provenance=mode=max"])
            .arg("--digest-file")
            .arg(&digest)
            .env("KILN_DIR", out.path().join(format!("kiln-{run}")))
            .ok();
        digests.push(std::fs::read_to_string(&digest).unwrap());
        let kept = out.keep();
        eprintln!("KEPT {}", kept.display());
        let out = tempfile::tempdir().unwrap();
        let _ = std::process::Command::new("cp")
            .arg("-a")
            .arg(kept.join("l"))
            .arg(out.path().join("l"))
            .status();
        let index = layout_top(&out.path().join("l"));
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    }
    assert_eq!(digests[0], digests[1], "the index digest, built twice");

    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("i.tar");
    let log = kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(&tar)
        .args(["--sbom", "-d", "kiln-e2e/attested:1", "--no-push"])
        .ok();
    assert!(
        log.contains("attestations are not kept in a docker archive"),
        "{log}"
    );
    let (fs, _) = docker_archive_fs(&tar);
    assert!(fs.contains_key("made"));
}

/// BUILDKIT_SBOM_SCAN_STAGE and BUILDKIT_SBOM_SCAN_CONTEXT: one SPDX
/// statement per stage and one for the context beside the image's;
/// `version=v0.2` writes the older provenance format.
#[test]
fn other_stages_the_context_and_provenance_v0_2() {
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(
        ctx.path(),
        "FROM scratch AS deps\nCOPY build/ /build/\nFROM scratch\nCOPY --from=deps /build/out.txt /\n",
    );
    write(
        &ctx.path()
            .join("build/node_modules/builder-only/package.json"),
        r#"{"name":"builder-only","version":"0.0.1"}"#,
    );
    write(&ctx.path().join("build/out.txt"), "out\n");
    write(
        &ctx.path()
            .join("ctx-only/node_modules/in-context/package.json"),
        r#"{"name":"in-context","version":"9.9.9"}"#,
    );
    let out = tempfile::tempdir().unwrap();
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(["--sbom", "--provenance=mode=min,version=v0.2"])
        .args(["--build-arg", "BUILDKIT_SBOM_SCAN_STAGE=true"])
        .args(["--build-arg", "BUILDKIT_SBOM_SCAN_CONTEXT=true"])
        .arg("--sbom-output")
        .arg(out.path().join("s"))
        .arg("--provenance-output")
        .arg(out.path().join("p"))
        .ok();
    let image = read_json(&out.path().join("s/sbom.spdx.json"));
    let stage = read_json(&out.path().join("s/sbom-1.spdx.json"));
    let context = read_json(&out.path().join("s/sbom-2.spdx.json"));
    assert!(!purls(&image).iter().any(|p| p.contains("builder-only")));
    assert_eq!(stage["predicate"]["name"], "deps");
    assert!(purls(&stage).contains("pkg:npm/builder-only@0.0.1"));
    assert_eq!(context["predicate"]["name"], "context");
    assert!(purls(&context).contains("pkg:npm/in-context@9.9.9"));
    for s in [&image, &stage, &context] {
        assert_valid_spdx(s);
    }
    let p = read_json(&out.path().join("p/provenance.json"));
    assert_eq!(p["predicateType"], "https://slsa.dev/provenance/v0.2");
    assert_eq!(
        p["predicate"]["buildType"],
        "https://mobyproject.org/buildkit@v1"
    );
    let dockerfile = std::fs::read(ctx.path().join("Dockerfile")).unwrap();
    assert_eq!(
        p["predicate"]["invocation"]["configSource"]["digest"]["sha256"],
        kiln_image::sha256_hex(&dockerfile)
    );
    // No registry, no pull: mode=min has no build args.
    assert!(p["predicate"]["invocation"]["parameters"]["args"]
        .get("build-arg:BUILDKIT_SBOM_SCAN_STAGE")
        .is_none());
}

/// A registry that refuses image indexes: the push fails, naming
/// `--provenance=false`, with no tag pushed; with it, the image alone goes.
#[test]
fn a_registry_refusing_indexes_is_told_to_push_without_provenance() {
    let reg = TestRegistry::start(Options::default());
    let proxy = crate::support::FaultProxy::start(
        &reg.addr,
        "PUT /v2/apps/noindex/manifests/1 ",
        crate::support::Fault::IndexRefused,
        100,
    );
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(ctx.path(), "");
    let dest = format!("{}/apps/noindex:1", proxy.addr);
    let (code, log) = kiln_build(ctx.path())
        .args(["-d", &dest, "--insecure-registry", &proxy.addr])
        .fails();
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains("--provenance=false"), "{log}");
    assert!(log.contains("MANIFEST_INVALID"), "{log}");
    // The tag was never written.
    let inspect = tool("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{}/apps/noindex:1", reg.addr))
        .output()
        .unwrap();
    assert!(!inspect.status.success());
    // Without provenance: one manifest, which the proxy lets through.
    kiln_build(ctx.path())
        .args(["-d", &dest, "--insecure-registry", &proxy.addr])
        .arg("--provenance=false")
        .ok();
    let raw = registry_manifest(&format!("{}/apps/noindex:1", reg.addr));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

/// A real Go program, Debian's umoci (which the README's test command
/// installs): the toolchain's stdlib and the program's package, read from
/// its build info; Debian builds without module lines, so no deps.
#[test]
fn a_go_program_built_by_debian_is_listed() {
    let umoci = Path::new("/usr/bin/umoci");
    assert!(
        umoci.is_file(),
        "umoci is missing: the README's test command installs it"
    );
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(umoci, ctx.path().join("umoci")).unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY umoci /usr/bin/umoci\n",
    );
    let out = tempfile::tempdir().unwrap();
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(["--sbom", "--sbom-output"])
        .arg(out.path().join("s"))
        .ok();
    let sbom = read_json(&out.path().join("s/sbom.spdx.json"));
    assert_valid_spdx(&sbom);
    let found = purls(&sbom);
    assert!(
        found.contains("pkg:golang/github.com/opencontainers/umoci/cmd/umoci"),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("pkg:golang/stdlib@1.")),
        "{found:?}"
    );
}
