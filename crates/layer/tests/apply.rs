//! Hostile layer tars: nothing may change outside the extraction root.

use kiln_layer::apply::{extract_layer, AppliedKind};
use kiln_layer::{Content, FileKind};
use std::path::Path;

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str, u32, u32),
}

/// A tar written with raw GNU headers, so names are exactly as given.
fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, link, data, ty): (&str, &str, &[u8], tar::EntryType) = match e {
            E::File(n, d) => (n, "", d, tar::EntryType::Regular),
            E::Dir(n) => (n, "", b"", tar::EntryType::Directory),
            E::Symlink(n, t) => (n, t, b"", tar::EntryType::Symlink),
            E::Hardlink(n, t) => (n, t, b"", tar::EntryType::Link),
            E::Char(n, ..) => (n, "", b"", tar::EntryType::Char),
        };
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(ty);
        h.set_mode(if matches!(e, E::Dir(_)) { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_uid(1234);
        h.set_gid(5678);
        if let E::Char(_, major, minor) = e {
            h.set_device_major(*major).unwrap();
            h.set_device_minor(*minor).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Every path under `dir` (relative), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir(dir);
    v.sort();
    v
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

struct Sandbox {
    outer: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let outer = tempfile::tempdir().unwrap();
        std::fs::create_dir(outer.path().join("root")).unwrap();
        std::fs::write(outer.path().join("sentinel"), "untouched").unwrap();
        Sandbox { outer }
    }
    fn root(&self) -> std::path::PathBuf {
        self.outer.path().join("root")
    }
    /// Nothing outside root changed.
    fn assert_outside_untouched(&self) {
        let all = listing(self.outer.path());
        let outside: Vec<&String> = all.iter().filter(|p| !p.starts_with("root")).collect();
        assert_eq!(outside, vec!["sentinel"], "{all:?}");
        assert_eq!(
            std::fs::read_to_string(self.outer.path().join("sentinel")).unwrap(),
            "untouched"
        );
    }
}

#[test]
fn dot_dot_is_refused() {
    let s = Sandbox::new();
    let err = extract_layer(
        &tar_of(&[E::File("../sentinel", b"pwned")])[..],
        &s.root(),
        "layer",
    )
    .unwrap_err();
    assert!(err.to_string().contains("../sentinel"), "{err}");
    let err = extract_layer(
        &tar_of(&[E::File("a/../../x", b"pwned")])[..],
        &s.root(),
        "layer",
    )
    .unwrap_err();
    assert!(err.to_string().contains("climbs out"), "{err}");
    s.assert_outside_untouched();
}

#[test]
fn absolute_paths_stay_inside() {
    let s = Sandbox::new();
    let abs = format!("{}/sentinel", s.outer.path().display());
    extract_layer(
        &tar_of(&[E::File(&abs, b"pwned"), E::File("/etc/x", b"in")])[..],
        &s.root(),
        "layer",
    )
    .unwrap();
    s.assert_outside_untouched();
    assert_eq!(
        std::fs::read_to_string(s.root().join("etc/x")).unwrap(),
        "in"
    );
    assert!(s.root().join(abs.trim_start_matches('/')).is_file());
}

#[test]
fn symlink_then_write_through_stays_inside() {
    let s = Sandbox::new();
    let outer = s.outer.path().display().to_string();
    let entries = [
        E::Symlink("up", "../../.."),
        E::File("up/escaped", b"pwned"),
        E::Symlink("abs", &outer),
        E::File("abs/sentinel", b"pwned"),
        E::Symlink("dir/loop", "loop"),
        E::Dir("real"),
        E::Symlink("real/parent", ".."),
        E::File("real/parent/top", b"top"),
    ];
    let applied = extract_layer(&tar_of(&entries)[..], &s.root(), "layer")
        .unwrap()
        .entries;
    s.assert_outside_untouched();
    assert_eq!(
        std::fs::read_to_string(s.root().join("escaped")).unwrap(),
        "pwned"
    );
    assert!(s
        .root()
        .join(outer.trim_start_matches('/'))
        .join("sentinel")
        .is_file());
    assert_eq!(
        std::fs::read_to_string(s.root().join("top")).unwrap(),
        "top"
    );
    // The symlinks themselves are kept as the layer says.
    assert_eq!(
        std::fs::read_link(s.root().join("up")).unwrap().to_str(),
        Some("../../..")
    );
    assert!(applied.iter().any(
        |e| e.path == "up" && e.kind == AppliedKind::Node(FileKind::Symlink("../../..".into()))
    ));
    // A write through a symlink loop is refused, not followed forever.
    let err = extract_layer(
        &tar_of(&[E::File("dir/loop/x", b"x")])[..],
        &s.root(),
        "layer",
    )
    .unwrap_err();
    assert!(err.to_string().contains("symbolic links"), "{err}");
    s.assert_outside_untouched();
}

#[test]
fn hardlinks_to_outside_are_refused() {
    let s = Sandbox::new();
    for target in ["../sentinel", "/etc/passwd", "nothing-here"] {
        let err = extract_layer(&tar_of(&[E::Hardlink("h", target)])[..], &s.root(), "layer")
            .unwrap_err();
        assert!(err.to_string().contains("hard link"), "{target}: {err}");
    }
    // Through a symlink planted to point outside: resolved inside, so no target.
    let outer = s.outer.path().display().to_string();
    let err = extract_layer(
        &tar_of(&[E::Symlink("out", &outer), E::Hardlink("h2", "out/sentinel")])[..],
        &s.root(),
        "layer",
    )
    .unwrap_err();
    assert!(err.to_string().contains("hard link"), "{err}");
    s.assert_outside_untouched();
    // A hard link inside works.
    let data = tar_of(&[E::File("f", b"data"), E::Hardlink("g", "f")]);
    let ok = extract_layer(&data[..], &s.root(), "layer").unwrap();
    // The diff_id is the sha256 of the whole uncompressed tar.
    use sha2::Digest;
    assert_eq!(ok.diff_id, hex::encode(sha2::Sha256::digest(&data)));
    assert_eq!(ok.uncompressed_size, data.len() as u64);
    let ok = ok.entries;
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(s.root().join("f")).unwrap().ino(),
        std::fs::metadata(s.root().join("g")).unwrap().ino()
    );
    assert_eq!(
        ok[1].kind,
        AppliedKind::Node(FileKind::Hardlink("f".into()))
    );
}

#[test]
fn devices_whiteouts_and_owners_are_recorded() {
    let s = Sandbox::new();
    let applied = extract_layer(
        &tar_of(&[
            E::Char("dev/null", 1, 3),
            E::File("etc/.wh.gone", b""),
            E::File("var/.wh..wh..opq", b""),
            E::File("owned", b"x"),
        ])[..],
        &s.root(),
        "layer",
    )
    .unwrap()
    .entries;
    s.assert_outside_untouched();
    let kinds: Vec<(&str, &AppliedKind)> =
        applied.iter().map(|e| (e.path.as_str(), &e.kind)).collect();
    let owned = AppliedKind::Node(FileKind::File {
        content: Content::Path(s.root().join("owned")),
        size: 1,
    });
    assert_eq!(
        kinds,
        vec![
            (
                "dev/null",
                &AppliedKind::Node(FileKind::CharDevice { major: 1, minor: 3 })
            ),
            ("etc/gone", &AppliedKind::Whiteout),
            ("var", &AppliedKind::Opaque),
            ("owned", &owned),
        ]
    );
    assert_eq!(
        (applied[3].uid, applied[3].gid),
        (1234, 5678),
        "owners recorded even when not applied"
    );
    assert!(
        !s.root().join("etc/.wh.gone").exists(),
        "whiteouts are not files"
    );
}

#[test]
fn zstd_and_gzip_layers_extract_with_the_same_diff_id() {
    use std::io::Write;
    let tar = tar_of(&[E::Dir("d"), E::File("d/f", b"content")]);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let mut ids = Vec::new();
    for data in [&tar, &zst, &gz] {
        let s = Sandbox::new();
        let got = extract_layer(&data[..], &s.root(), "layer").unwrap();
        assert_eq!(
            std::fs::read_to_string(s.root().join("d/f")).unwrap(),
            "content"
        );
        ids.push(got.diff_id);
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

/// Describing a layer gives the records extraction gives (content aside),
/// the same diff_id, and refuses what extraction refuses.
#[test]
fn describing_matches_extracting() {
    use kiln_layer::apply::{describe_layer_to, extract_layer_to, ExtractOptions};
    let tar = tar_of(&[
        E::Dir("etc/"),
        E::File("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        E::Hardlink("etc/passwd-", "etc/passwd"),
        E::Symlink("lib", "usr/lib"),
        E::Char("dev/null", 1, 3),
        E::File("etc/.wh.gone", b""),
        E::File("var/.wh..wh..opq", b""),
    ]);
    // Records as an index keeps them: without where a file's bytes are.
    let index_form = |records: &[kiln_layer::apply::AppliedEntry]| {
        let mut records = records.to_vec();
        for r in &mut records {
            if let AppliedKind::Node(FileKind::File { content, .. }) = &mut r.kind {
                *content = Content::default();
            }
        }
        records
    };
    let s = Sandbox::new();
    let mut extracted = Vec::new();
    let x = extract_layer_to(
        &tar[..],
        &s.root(),
        "layer",
        &ExtractOptions::default(),
        &mut |e| {
            extracted.push(e);
            Ok(())
        },
    )
    .unwrap();
    let mut described = Vec::new();
    let d = describe_layer_to(&tar[..], "layer", &mut |e| {
        described.push(e);
        Ok(())
    })
    .unwrap();
    assert_eq!(index_form(&described), index_form(&extracted));
    assert_eq!(described.len(), 7);
    assert_eq!(
        (d.diff_id, d.uncompressed_size),
        (x.diff_id, x.uncompressed_size)
    );

    let hostile = tar_of(&[E::File("../escape", b"x")]);
    assert!(describe_layer_to(&hostile[..], "layer", &mut |_| Ok(())).is_err());
}

/// A whiteout naming `..` or `.` (at the top or below) is refused and an
/// opaque marker on the root itself stays inside, extracted as the layer
/// store extracts (whiteouts written as overlay devices). The fuzzer found
/// the first: a top-level `.wh...` replaced the folder above the root.
#[test]
fn whiteouts_of_dot_dot_and_an_opaque_root_stay_inside() {
    use kiln_layer::apply::{describe_layer_to, extract_layer_to, ExtractOptions};
    let refused = [
        vec![E::File(".wh...", b"")],
        vec![E::Dir("a/"), E::File("a/.wh...", b"")],
        vec![E::File(".wh..", b"")],
        vec![E::File(".wh.", b"")],
    ];
    for (i, entries) in refused.iter().enumerate() {
        let s = Sandbox::new();
        let tar = tar_of(entries);
        let markers = ExtractOptions {
            overlay_markers: true,
        };
        let r = extract_layer_to(&tar[..], &s.root(), "layer", &markers, &mut |_| Ok(()));
        assert!(r.is_err(), "{i}: extracted");
        assert!(
            describe_layer_to(&tar[..], "layer", &mut |_| Ok(())).is_err(),
            "{i}"
        );
        s.assert_outside_untouched();
        assert!(s.root().is_dir(), "{i}: the root is gone");
    }
    let s = Sandbox::new();
    let opaque = tar_of(&[E::File(".wh..wh..opq", b""), E::File("x", b"y")]);
    let markers = ExtractOptions {
        overlay_markers: true,
    };
    extract_layer_to(&opaque[..], &s.root(), "layer", &markers, &mut |_| Ok(())).unwrap();
    s.assert_outside_untouched();
}

/// A layer's entries apply in the tar's order: a path written twice keeps
/// the later bytes; a file replaced by a directory, a directory of files
/// replaced by a file or by a link to outside, and a hard link to a file
/// just written all come out as the order says, and nothing leaves the
/// root.
#[test]
fn entries_apply_in_the_tars_order() {
    let s = Sandbox::new();
    let outer = s.outer.path().display().to_string();
    let names: Vec<String> = (0..300).map(|i| format!("many/d{}/f{i}", i % 7)).collect();
    let mut entries: Vec<E> = names.iter().map(|n| E::File(n, b"first")).collect();
    let again: Vec<String> = (0..300).map(|i| format!("many/d{}/f{i}", i % 7)).collect();
    entries.extend(again.iter().map(|n| E::File(n, b"second")));
    entries.extend([
        E::File("becomes-dir", b"file"),
        E::Dir("becomes-dir"),
        E::File("becomes-dir/inside", b"in"),
        E::Dir("becomes-file"),
        E::File("becomes-file/a", b"a"),
        E::File("becomes-file/b", b"b"),
        E::File("becomes-file", b"now a file"),
        E::Dir("becomes-link"),
        E::File("becomes-link/a", b"a"),
        E::Symlink("becomes-link", &outer),
        E::File("becomes-link/sentinel", b"pwned"),
        E::File("linked", b"linked bytes"),
        E::Hardlink("hard", "linked"),
    ]);
    extract_layer(&tar_of(&entries)[..], &s.root(), "layer").unwrap();
    s.assert_outside_untouched();
    let read = |p: &str| std::fs::read_to_string(s.root().join(p)).unwrap();
    for n in &names {
        assert_eq!(read(n), "second", "{n}");
    }
    assert_eq!(read("becomes-dir/inside"), "in");
    assert_eq!(read("becomes-file"), "now a file");
    assert_eq!(
        std::fs::read_link(s.root().join("becomes-link"))
            .unwrap()
            .display()
            .to_string(),
        outer
    );
    // The write through the link stays inside, as if the root were `/`.
    assert!(s
        .root()
        .join(outer.trim_start_matches('/'))
        .join("sentinel")
        .is_file());
    assert_eq!(read("hard"), "linked bytes");
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::metadata(s.root().join(p)).unwrap().ino();
    assert_eq!(ino("hard"), ino("linked"));
}
