use kiln_layer::{write_layer, Compression, Content, Entry, FileKind, LayerOptions};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

fn entry(path: &str, kind: FileKind, mode: u32) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        xattrs: BTreeMap::new(),
    }
}

fn file(path: &str, data: &[u8]) -> Entry {
    entry(
        path,
        FileKind::File {
            content: Content::Bytes(Arc::new(data.to_vec())),
            size: data.len() as u64,
        },
        0o644,
    )
}

#[test]
fn gzip_layer_digests_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("d/{}", "x".repeat(150));
    let mut big = entry("z", FileKind::Dir, 0o755);
    big.uid = 100_000_000;
    let mut with_xattr = file("d/cap", b"bin");
    with_xattr
        .xattrs
        .insert("security.capability".into(), vec![1, 2, 3]);
    let entries = vec![
        file("a-b", b"2"),
        file("a/b", b"1"),
        entry("a", FileKind::Dir, 0o755),
        entry("d", FileKind::Dir, 0o700),
        file(&long, b"long"),
        entry("d/link", FileKind::Symlink("../a/b".into()), 0o777),
        entry("d/hard", FileKind::Hardlink("a/b".into()), 0o644),
        with_xattr,
        big,
    ];
    let info = write_layer(entries.clone(), dir.path(), &LayerOptions::default()).unwrap();
    let blob = std::fs::read(&info.path).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&blob)), info.digest);
    assert_eq!(blob.len() as u64, info.size);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(hex::encode(Sha256::digest(&tar)), info.diff_id);
    assert_eq!(tar.len() as u64, info.uncompressed_size);

    let mut archive = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().to_string();
        if path == "d/cap" {
            let ext: Vec<_> = e
                .pax_extensions()
                .unwrap()
                .unwrap()
                .map(|x| x.unwrap().key().unwrap().to_string())
                .collect();
            assert_eq!(ext, vec!["SCHILY.xattr.security.capability"]);
        }
        if path == "z/" {
            // The ustar field cannot hold it: a PAX record carries the real uid.
            let ext: Vec<_> = e
                .pax_extensions()
                .unwrap()
                .unwrap()
                .map(|x| x.unwrap().value().unwrap().to_string())
                .collect();
            assert_eq!(ext, vec!["100000000"]);
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        seen.push(path);
    }
    assert_eq!(
        seen,
        vec![
            "a/",
            "a/b",
            "a-b",
            "d/",
            "d/cap",
            "d/hard",
            "d/link",
            long.as_str(),
            "z/"
        ]
    );

    // Same entries in another order: byte-identical layer.
    let mut reversed = entries;
    reversed.reverse();
    let again = write_layer(reversed, dir.path(), &LayerOptions::default()).unwrap();
    assert_eq!(again.digest, info.digest);
}

#[test]
fn clamp_and_plain_tar() {
    let dir = tempfile::tempdir().unwrap();
    let options = LayerOptions {
        compression: Compression::None,
        clamp_mtime: Some(10),
        threads: 0,
    };
    let info = write_layer(vec![file("f", b"x")], dir.path(), &options).unwrap();
    assert_eq!(info.digest, info.diff_id);
    let tar = std::fs::read(&info.path).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let e = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.header().mtime().unwrap(), 10);
}

#[test]
fn rejects_escaping_path_and_short_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(write_layer(
        vec![file("../x", b"1")],
        dir.path(),
        &LayerOptions::default()
    )
    .is_err());
    let short = entry(
        "f",
        FileKind::File {
            content: Content::Bytes(Arc::new(b"ab".to_vec())),
            size: 5,
        },
        0o644,
    );
    assert!(write_layer(vec![short], dir.path(), &LayerOptions::default()).is_err());
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A layer's digest does not depend on the number of compression threads
/// (gzip's blocks and zstd's jobs are cut by size, not by thread), and
/// both read back as the same tar.
#[test]
fn digests_do_not_depend_on_threads() {
    let mut big = Vec::new();
    let mut i = 0u64;
    while big.len() < 24 << 20 {
        big.extend_from_slice(format!("{i} {}\n", i.wrapping_mul(2654435761) % 9973).as_bytes());
        i += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::Gzip(6), Compression::Zstd(3)] {
        let digests: Vec<(String, String)> = [1, 2, 4]
            .iter()
            .map(|&threads| {
                let options = LayerOptions {
                    compression,
                    clamp_mtime: None,
                    threads,
                };
                let info = write_layer(vec![file("big", &big)], dir.path(), &options).unwrap();
                (info.digest, info.diff_id)
            })
            .collect();
        assert!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "{compression:?}: {digests:?}"
        );
        assert_ne!(digests[0].0, digests[0].1, "{compression:?} compresses");
    }
}
