//! Keeping kiln's directory under `--kiln-dir-max-size`: after a build,
//! the least recently used pulled blobs, extracted layers, local cache
//! blobs and cache mounts go first (each is marked when a build uses it)
//! until the directory fits. Builds hold a shared lock on the directory;
//! eviction runs only when it can take the lock alone, so nothing a
//! running build uses disappears under it.

use kiln_image::OciLayout;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A build's hold on kiln's directory (released when dropped).
pub struct Hold {
    _lock: File,
}

/// Takes the shared lock a build holds while it runs.
pub fn hold(kiln_dir: &Path) -> std::io::Result<Hold> {
    std::fs::create_dir_all(kiln_dir)?;
    let f = File::create(kiln_dir.join(".lock"))?;
    f.lock_shared()?;
    Ok(Hold { _lock: f })
}

/// What eviction did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Bytes in the directory before.
    pub before: u64,
    pub freed: u64,
    pub removed: usize,
}

struct Unit {
    used: SystemTime,
    size: u64,
    path: PathBuf,
    dir: bool,
}

/// Removes least recently used units until the directory holds at most
/// `max` bytes. `None`: another build holds the directory, nothing done.
pub fn evict(kiln_dir: &Path, max: u64, held: Hold) -> std::io::Result<Option<Evicted>> {
    // Upgrade this build's hold: only when no other build runs.
    drop(held);
    let lock = File::create(kiln_dir.join(".lock"))?;
    if lock.try_lock().is_err() {
        return Ok(None);
    }
    // No build runs now: work directories left are those of builds that
    // were killed.
    for e in std::fs::read_dir(kiln_dir.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("build-") {
            crate::layerstore::remove_tree(&e.path());
        }
    }
    let mut units = Vec::new();
    files(&kiln_dir.join("blobs/sha256"), &mut units);
    files(&kiln_dir.join("cache/blobs/sha256"), &mut units);
    dirs(&kiln_dir.join("layers/v3"), &mut units, |d| {
        let size = std::fs::read_to_string(d.join("size")).ok()?;
        let used = d
            .join(crate::layerstore::INDEX)
            .metadata()
            .ok()?
            .modified()
            .ok()?;
        Some((size.trim().parse().ok()?, used))
    });
    dirs(&kiln_dir.join("mounts/cache"), &mut units, |d| {
        Some((tree_size(d), d.metadata().ok()?.modified().ok()?))
    });
    let before: u64 = units.iter().map(|u| u.size).sum();
    let mut report = Evicted {
        before,
        ..Evicted::default()
    };
    if before <= max {
        return Ok(Some(report));
    }
    units.sort_by_key(|u| u.used);
    let mut total = before;
    for u in units {
        if total <= max {
            break;
        }
        match u.dir {
            true => {
                crate::layerstore::remove_tree(&u.path);
                // Its lock file (layers: `.NAME.lock`, cache mounts:
                // `NAME.lock`): no build runs while eviction holds the
                // directory.
                if let (Some(parent), Some(name)) = (u.path.parent(), u.path.file_name()) {
                    let name = name.to_string_lossy();
                    let _ = std::fs::remove_file(parent.join(format!(".{name}.lock")));
                    let _ = std::fs::remove_file(parent.join(format!("{name}.lock")));
                }
            }
            false => {
                let _ = std::fs::remove_file(&u.path);
            }
        }
        if !u.path.exists() {
            total -= u.size;
            report.freed += u.size;
            report.removed += 1;
        }
    }
    prune_cache_index(&kiln_dir.join("cache"));
    drop(lock);
    Ok(Some(report))
}

fn files(dir: &Path, out: &mut Vec<Unit>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if m.is_file() && !hidden {
            out.push(Unit {
                used: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                size: m.len(),
                path: e.path(),
                dir: false,
            });
        }
    }
}

fn dirs(dir: &Path, out: &mut Vec<Unit>, measure: impl Fn(&Path) -> Option<(u64, SystemTime)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if hidden || !path.is_dir() {
            continue;
        }
        // Unmeasurable (an older layout): the oldest, of its real size.
        let (size, used) =
            measure(&path).unwrap_or_else(|| (tree_size(&path), SystemTime::UNIX_EPOCH));
        out.push(Unit {
            used,
            size,
            path,
            dir: true,
        });
    }
}

fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Drops the local cache's entries whose blobs were removed.
pub(crate) fn prune_cache_index(dir: &Path) {
    if !dir.join("index.json").is_file() {
        return;
    }
    let layout = OciLayout::new(dir);
    let whole = |desc: &kiln_image::layout::Descriptor| -> bool {
        let Ok((_, manifest)) = layout.manifest(desc) else {
            return false;
        };
        std::iter::once(manifest.config())
            .chain(manifest.layers())
            .all(|d| layout.blob_path(&kiln_image::oci::digest_of(d)).is_file())
    };
    if let Err(e) = layout.retain(&whole) {
        tracing::warn!("pruning the local cache's index: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn file(path: &Path, size: usize, age_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![0u8; size]).unwrap();
        let f = File::options().append(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .unwrap();
    }

    fn layer(dir: &Path, hex: &str, size: usize, age_secs: u64) -> PathBuf {
        let d = dir.join("layers/v3").join(hex);
        file(&d.join("root/f"), size, 0);
        std::fs::write(d.join("size"), size.to_string()).unwrap();
        file(&d.join(crate::layerstore::INDEX), 2, age_secs);
        d
    }

    #[test]
    fn least_recently_used_go_first_until_it_fits() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path();
        file(&k.join("blobs/sha256/old"), 1000, 300);
        file(&k.join("blobs/sha256/new"), 1000, 10);
        let old_layer = layer(k, "aa", 3000, 200);
        file(&k.join("layers/v3/.aa.lock"), 0, 200);
        let new_layer = layer(k, "bb", 3000, 5);
        file(&k.join("cache/blobs/sha256/c"), 500, 100);
        let e = evict(k, 5000, hold(k).unwrap()).unwrap().unwrap();
        assert_eq!(e.before, 8500);
        // Oldest first: the old blob (1000), the old layer (3000): 4500 left.
        assert_eq!((e.removed, e.freed), (2, 4000));
        assert!(!k.join("blobs/sha256/old").exists());
        assert!(!old_layer.exists());
        assert!(!k.join("layers/v3/.aa.lock").exists());
        assert!(new_layer.exists() && k.join("blobs/sha256/new").exists());
        assert!(k.join("cache/blobs/sha256/c").exists());
        // Under the limit: nothing to do.
        let e = evict(k, 5000, hold(k).unwrap()).unwrap().unwrap();
        assert_eq!(e.removed, 0);
    }

    #[test]
    fn another_build_holding_the_directory_stops_eviction() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path();
        file(&k.join("blobs/sha256/x"), 1000, 100);
        let other = hold(k).unwrap();
        assert_eq!(evict(k, 1, hold(k).unwrap()).unwrap(), None);
        assert!(k.join("blobs/sha256/x").exists());
        drop(other);
        assert_eq!(evict(k, 1, hold(k).unwrap()).unwrap().unwrap().removed, 1);
    }
}
