//! `kiln cache verify`: checks what kiln's directory holds and removes
//! what is broken (a disk error, a hand edit) or left behind (a build
//! killed mid-write), so the next build fetches or rebuilds it.
//!
//! - Blobs (pulled, and the local step cache's): their sha256 must be
//!   their name; partial downloads (temporary names) go.
//! - Extracted layers: the index must read to its end and the files'
//!   directory exist; half-extracted directories (`.tmp-*`) go. The files
//!   themselves are not re-hashed (that is a re-extraction).
//! - The local cache's index: entries whose manifest, config or layers
//!   are missing go.
//! - Work directories of builds that did not finish (`tmp/build-*`).
//!
//! It runs only when no build uses the directory (the lock eviction uses).

use crate::layerstore::{remove_tree, LayerStore};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Verified {
    /// Items checked and found whole.
    pub good: usize,
    /// What was removed, and why.
    pub removed: Vec<(PathBuf, String)>,
}

/// Checks `kiln_dir`; `None` when a build is using it.
pub fn verify(kiln_dir: &Path) -> std::io::Result<Option<Verified>> {
    let lock = File::create(kiln_dir.join(".lock"))?;
    if lock.try_lock().is_err() {
        return Ok(None);
    }
    let mut v = Verified::default();
    for dir in ["blobs/sha256", "cache/blobs/sha256"] {
        blobs(&kiln_dir.join(dir), &mut v);
    }
    layers(&kiln_dir.join("layers"), &mut v);
    for e in entries(&kiln_dir.join("tmp")) {
        if e.file_name().to_string_lossy().starts_with("build-") {
            remove(
                &mut v,
                &e.path(),
                "the work directory of a build that did not finish",
            );
        }
    }
    crate::evict::prune_cache_index(&kiln_dir.join("cache"));
    drop(lock);
    Ok(Some(v))
}

fn entries(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir).into_iter().flatten().flatten()
}

fn remove(v: &mut Verified, path: &Path, why: &str) {
    if path.is_dir() {
        remove_tree(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
    tracing::warn!("removed {}: {why}", path.display());
    v.removed.push((path.to_path_buf(), why.to_string()));
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn blobs(dir: &Path, v: &mut Verified) {
    for e in entries(dir) {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !path.is_file() {
            continue;
        }
        if !is_hex64(&name) {
            remove(v, &path, "a partial download");
            continue;
        }
        match sha256_file(&path) {
            Ok(h) if h == name => v.good += 1,
            Ok(h) => remove(v, &path, &format!("its content is sha256:{h}")),
            Err(e) => remove(v, &path, &format!("unreadable: {e}")),
        }
    }
}

fn layers(dir: &Path, v: &mut Verified) {
    let store = LayerStore::new(dir);
    let v3 = dir.join("v3");
    for e in entries(&v3) {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(".tmp-") {
            remove(v, &path, "a layer whose extraction did not finish");
            continue;
        }
        if !is_hex64(&name) || !path.is_dir() {
            continue;
        }
        match store.check(&name) {
            Ok(()) => v.good += 1,
            Err(why) => remove(v, &path, &why.to_string()),
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}
