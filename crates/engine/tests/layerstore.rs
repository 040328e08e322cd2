//! The layer store keeps a layer only once its source checked out.

use kiln_engine::layerstore::{LayerStore, LayerStoreError};

/// A one-file tar, as a download would bring it.
fn tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "hi.txt", &b"hi"[..]).unwrap();
    b.into_inner().unwrap()
}

/// The check runs after the last entry and before the layer is kept:
/// when it fails (a download whose digest turned out wrong), neither
/// the layer nor a half-made directory is left.
#[test]
fn a_failed_check_keeps_nothing() {
    let d = tempfile::tempdir().unwrap();
    let store = LayerStore::new(d.path());
    let bytes = tar();
    let diff_id = {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
    };
    let err = store
        .extract_from(
            &diff_id,
            || Ok(&bytes[..]),
            "a download",
            "layer x",
            || {
                Err(LayerStoreError::Missing {
                    what: "checked".into(),
                    dir: "-".into(),
                })
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("checked"), "{err}");
    assert!(!store.has(&diff_id));
    let left: Vec<_> = std::fs::read_dir(d.path().join("v3"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let stored = store
        .extract_from(
            &diff_id,
            || Ok(&bytes[..]),
            "a download",
            "layer x",
            || Ok(()),
        )
        .unwrap();
    assert_eq!(std::fs::read(stored.root.join("hi.txt")).unwrap(), b"hi");
    assert!(store.has(&diff_id));
}

/// gzip's CRC is not computed when a layer is extracted: the diff_id,
/// taken over every uncompressed byte, is what refuses a changed layer.
/// A gzip stream that inflates to other bytes than the diff_id names is
/// refused and nothing is kept; a wrong CRC alone (the diff_id right)
/// does not matter.
#[test]
fn the_diff_id_refuses_what_a_gzip_crc_would() {
    use std::io::Write as _;
    let d = tempfile::tempdir().unwrap();
    let store = LayerStore::new(d.path());
    let bytes = tar();
    let sha = |b: &[u8]| {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
    };
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut other = bytes.clone();
    other[600] ^= 1; // hi.txt's content
    let err = store
        .extract_from(
            &sha(&bytes),
            || Ok(std::io::Cursor::new(gz(&other))),
            "a download",
            "layer x",
            || Ok(()),
        )
        .unwrap_err();
    assert!(
        matches!(err, LayerStoreError::DiffIdMismatch { .. }),
        "{err}"
    );
    assert!(!store.has(&sha(&bytes)));

    let mut bad_crc = gz(&bytes);
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let stored = store
        .extract_from(
            &sha(&bytes),
            || Ok(std::io::Cursor::new(bad_crc.clone())),
            "a download",
            "layer x",
            || Ok(()),
        )
        .unwrap();
    assert_eq!(std::fs::read(stored.root.join("hi.txt")).unwrap(), b"hi");
}
