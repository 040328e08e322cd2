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
        let mut writer = self.writer(digest, expected_size, what)?;
        let mut buf = vec![0u8; 1 << 16];
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
            writer.update(&buf[..n])?;
        }
        writer.finish()
    }

    /// A writer of blob `digest` into the store, verified when finished.
    pub fn writer(
        &self,
        digest: &str,
        expected_size: Option<u64>,
        what: &str,
    ) -> Result<BlobWriter, RegistryError> {
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
        let file = File::create(&tmp)
            .map_err(|e| RegistryError::io(format!("creating {}", tmp.display()), e))?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            size: 0,
            digest: digest.to_string(),
            expected_size,
            what: what.to_string(),
            path,
            tmp: Some(tmp),
        })
    }
}

/// A blob on its way into the store: its bytes hashed and written to a
/// temporary file, renamed into place by [`BlobWriter::finish`] only when
/// digest and size match. Dropped unfinished, the file goes.
pub struct BlobWriter {
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    digest: String,
    expected_size: Option<u64>,
    what: String,
    path: PathBuf,
    /// Until finished.
    tmp: Option<PathBuf>,
}

impl BlobWriter {
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), RegistryError> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.out.write_all(bytes).map_err(|e| self.write_error(e))
    }

    fn write_error(&self, e: std::io::Error) -> RegistryError {
        let tmp = self.tmp.as_deref().unwrap_or(&self.path);
        RegistryError::io(format!("writing {}", tmp.display()), e)
    }

    /// Checks digest and size and stores the blob; its path.
    pub fn finish(mut self) -> Result<PathBuf, RegistryError> {
        self.out.flush().map_err(|e| self.write_error(e))?;
        let actual = format!(
            "sha256:{}",
            hex::encode(std::mem::take(&mut self.hasher).finalize())
        );
        if actual != self.digest {
            return Err(RegistryError::DigestMismatch {
                what: self.what.clone(),
                expected: self.digest.clone(),
                actual,
            });
        }
        if let Some(s) = self.expected_size.filter(|s| *s != self.size) {
            return Err(RegistryError::DigestMismatch {
                what: self.what.clone(),
                expected: format!("{s} bytes"),
                actual: format!("{} bytes", self.size),
            });
        }
        let Some(tmp) = self.tmp.take() else {
            return Ok(self.path.clone());
        };
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            self.tmp = Some(tmp);
            return Err(RegistryError::io(
                format!("storing {}", self.path.display()),
                e,
            ));
        }
        Ok(self.path.clone())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
