//! Content-addressed blob files under kiln's directory. A blob is written
//! to a temporary file while its sha256 is computed and only renamed into
//! place when digest and size match, so the store never holds a bad blob.

use crate::RegistryError;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Marks a stored file as just used (its mtime), for the least recently
/// used eviction of kiln's directory.
pub fn touch(path: &Path) {
    if let Ok(f) = File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn new(dir: impl Into<PathBuf>) -> BlobStore {
        BlobStore { dir: dir.into() }
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("sha256").join(hex)
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// Copy `reader` into the store as `digest`, verifying it.
    pub fn write_verified(
        &self,
        digest: &str,
        expected_size: Option<u64>,
        reader: &mut dyn Read,
        what: &str,
    ) -> Result<PathBuf, RegistryError> {
        let path = self.path(digest);
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(|e| RegistryError::io(format!("creating {}", parent.display()), e))?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let result = (|| {
            let mut out = BufWriter::with_capacity(
                1 << 20,
                File::create(&tmp)
                    .map_err(|e| RegistryError::io(format!("creating {}", tmp.display()), e))?,
            );
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| RegistryError::Transport {
                        what: what.to_string(),
                        message: format!("download broke: {e}"),
                    })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| RegistryError::io(format!("writing {}", tmp.display()), e))?;
                size += n as u64;
            }
            out.flush()
                .map_err(|e| RegistryError::io(format!("writing {}", tmp.display()), e))?;
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if actual != digest {
                return Err(RegistryError::DigestMismatch {
                    what: what.to_string(),
                    expected: digest.to_string(),
                    actual,
                });
            }
            if let Some(s) = expected_size {
                if s != size {
                    return Err(RegistryError::DigestMismatch {
                        what: what.to_string(),
                        expected: format!("{s} bytes"),
                        actual: format!("{size} bytes"),
                    });
                }
            }
            std::fs::rename(&tmp, &path)
                .map_err(|e| RegistryError::io(format!("storing {}", path.display()), e))?;
            Ok(path.clone())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}
