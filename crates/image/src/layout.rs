//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`), the
//! one type that reads and writes it: for `--oci-layout-path`, for base
//! images stored by `kiln warm`, and for the layer cache in a layout.
//! Blobs are written first and `index.json` last (atomically), so a reader
//! never sees a reference to a missing blob. A manifest tagged with a ref
//! name already in the index replaces it; others are kept.

use crate::manifest::{BuiltImage, MEDIA_TYPE_INDEX};
use crate::ImageError;
use std::fs;
use std::path::{Path, PathBuf};

use crate::oci::{descriptor, digest_of};
pub use crate::oci::{Descriptor, Index, Manifest, REF_NAME_ANNOTATION};

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
}

impl OciLayout {
    pub fn new(dir: impl Into<PathBuf>) -> OciLayout {
        OciLayout { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory blobs are kept in by algorithm (`blobs/`).
    pub fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.blobs_dir().join("sha256").join(hex_of(digest))
    }

    /// A blob's bytes, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let context = || format!("{}: blob {digest}", self.dir.display());
        let bytes = fs::read(self.blob_path(digest)).map_err(|e| ImageError::io(context(), e))?;
        if crate::sha256_digest(&bytes) != digest {
            return Err(ImageError::invalid(
                context(),
                "content does not match its digest",
            ));
        }
        Ok(bytes)
    }

    /// `index.json`, or `None` when the layout has none yet.
    pub fn index(&self) -> Result<Option<Index>, ImageError> {
        let path = self.dir.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => crate::oci::parse_index(&bytes, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The manifest descriptor tagged `ref_name`.
    pub fn find(&self, ref_name: &str) -> Result<Option<Descriptor>, ImageError> {
        Ok(self.index()?.and_then(|i| {
            i.manifests()
                .iter()
                .find(|d| crate::oci::ref_name(d) == Some(ref_name))
                .cloned()
        }))
    }

    /// The manifest a descriptor points at: its bytes and its fields.
    pub fn manifest(&self, desc: &Descriptor) -> Result<(Vec<u8>, Manifest), ImageError> {
        let digest = digest_of(desc);
        let bytes = self.read_blob(&digest)?;
        let what = format!("{}: {digest}", self.dir.display());
        Ok((bytes.clone(), crate::oci::parse_manifest(&bytes, &what)?))
    }

    /// `oci-layout` and the blob directory.
    pub fn init(&self) -> Result<(), ImageError> {
        let blobs = self.blobs_dir().join("sha256");
        fs::create_dir_all(&blobs)
            .map_err(|e| ImageError::io(format!("creating {}", blobs.display()), e))?;
        write_file(
            &self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
    }

    /// Write a blob from bytes (nothing when it is there already).
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let dst = self.blob_path(digest);
        if dst.exists() {
            return Ok(());
        }
        write_file(&dst, bytes)
    }

    /// Write a built image's blobs, then tag its manifest `ref_name`.
    pub fn write_image(&self, image: &BuiltImage, ref_name: &str) -> Result<(), ImageError> {
        self.write_blobs(image)?;
        self.tag(crate::index::descriptor_of(image)?, ref_name)
    }

    /// Write the images' blobs, then their index, tagged `ref_name`.
    pub fn write_index(
        &self,
        images: &[BuiltImage],
        index: &crate::ImageIndex,
        ref_name: &str,
    ) -> Result<(), ImageError> {
        for image in images {
            self.write_blobs(image)?;
        }
        self.put_blob(&index.digest, &index.bytes)?;
        self.tag(
            descriptor(&index.media_type, &index.digest, index.bytes.len() as u64)?,
            ref_name,
        )
    }

    /// A built image's layers, config and manifest (no tag).
    fn write_blobs(&self, image: &BuiltImage) -> Result<(), ImageError> {
        self.init()?;
        for layer in &image.layers {
            let dst = self.blob_path(&layer.digest);
            if dst.exists() {
                continue;
            }
            // A hard link when on the same file system, else a copy.
            if fs::hard_link(&layer.path, &dst).is_err() {
                let tmp = unique_tmp(&dst);
                fs::copy(&layer.path, &tmp).map_err(|e| {
                    ImageError::io(format!("copying layer to {}", dst.display()), e)
                })?;
                fs::rename(&tmp, &dst)
                    .map_err(|e| ImageError::io(format!("writing {}", dst.display()), e))?;
            }
        }
        self.put_blob(&image.config_digest, &image.config_bytes)?;
        self.put_blob(&image.manifest_digest, &image.manifest_bytes)
    }

    /// Builds (and parallel stages) change index.json at the same time:
    /// one at a time reads, changes and writes it, holding this.
    fn lock_index(&self) -> Result<fs::File, ImageError> {
        let path = self.dir.join(".kiln-index.lock");
        fs::File::create(&path)
            .and_then(|f| f.lock().map(|_| f))
            .map_err(|e| ImageError::io(format!("locking {}", path.display()), e))
    }

    /// Keeps in the index only the entries `keep` accepts.
    pub fn retain(&self, keep: &dyn Fn(&Descriptor) -> bool) -> Result<(), ImageError> {
        self.change_index(|index| {
            let mut manifests = index.manifests().clone();
            manifests.retain(|m| keep(m));
            index.set_manifests(manifests);
        })
    }

    /// Add `desc` to the index as `ref_name` (replacing what had that name).
    pub fn tag(&self, mut desc: Descriptor, ref_name: &str) -> Result<(), ImageError> {
        self.init()?;
        let mut annotations = desc.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME_ANNOTATION.into(), ref_name.into());
        desc.set_annotations(Some(annotations));
        self.change_index(|index| {
            let mut manifests = index.manifests().clone();
            manifests.retain(|m| crate::oci::ref_name(m) != Some(ref_name));
            manifests.push(desc);
            index.set_manifests(manifests);
        })
    }

    /// Reads index.json (an empty index when there is none), changes it
    /// and writes it back, under the index lock.
    fn change_index(&self, change: impl FnOnce(&mut Index)) -> Result<(), ImageError> {
        let _lock = self.lock_index()?;
        let mut index = match self.index()? {
            Some(index) => index,
            None => {
                let mut empty = Index::default();
                empty.set_media_type(Some(MEDIA_TYPE_INDEX.into()));
                empty
            }
        };
        change(&mut index);
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| ImageError::invalid("serialising index.json", e.to_string()))?;
        write_file(&self.dir.join("index.json"), &bytes)
    }
}

/// Write `image` into the layout at `dir` as `ref_name`.
pub fn write_oci_layout(dir: &Path, image: &BuiltImage, ref_name: &str) -> Result<(), ImageError> {
    OciLayout::new(dir).write_image(image, ref_name)
}

pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A temporary name beside `path` that no other writer uses.
fn unique_tmp(path: &Path) -> std::path::PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("kiln-tmp-{}-{n}", std::process::id()))
}

/// Writes `path` whole or not at all (a temporary file of this writer's
/// own, renamed).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = unique_tmp(path);
    fs::write(&tmp, bytes).map_err(|e| ImageError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| ImageError::io(format!("writing {}", path.display()), e))
}
