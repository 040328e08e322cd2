//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`), the
//! one type that reads and writes it: for `--oci-layout-path`, for base
//! images stored by `kiln warm`, and for the layer cache in a layout.
//! Blobs are written first and `index.json` last (atomically), so a reader
//! never sees a reference to a missing blob. A manifest tagged with a ref
//! name already in the index replaces it; others are kept.

use crate::manifest::{BuiltImage, MEDIA_TYPE_INDEX};
use crate::ImageError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A content descriptor (the fields kiln reads and writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Descriptor {
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(REF_NAME_ANNOTATION)
            .map(String::as_str)
    }
}

/// `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

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
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ImageError::invalid(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The manifest descriptor tagged `ref_name`.
    pub fn find(&self, ref_name: &str) -> Result<Option<Descriptor>, ImageError> {
        Ok(self.index()?.and_then(|i| {
            i.manifests
                .into_iter()
                .find(|d| d.ref_name() == Some(ref_name))
        }))
    }

    /// The manifest a descriptor points at: its bytes and its fields.
    pub fn manifest(&self, desc: &Descriptor) -> Result<(Vec<u8>, Manifest), ImageError> {
        let bytes = self.read_blob(&desc.digest)?;
        let manifest = serde_json::from_slice(&bytes).map_err(|e| {
            ImageError::invalid(
                format!("{}: manifest {}", self.dir.display(), desc.digest),
                e.to_string(),
            )
        })?;
        Ok((bytes, manifest))
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
        self.tag(crate::index::descriptor_of(image), ref_name)
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
            Descriptor {
                media_type: index.media_type.clone(),
                digest: index.digest.clone(),
                size: index.bytes.len() as u64,
                annotations: BTreeMap::new(),
                platform: None,
            },
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
        self.change_index(|index| index.manifests.retain(|m| keep(m)))
    }

    /// Add `desc` to the index as `ref_name` (replacing what had that name).
    pub fn tag(&self, mut desc: Descriptor, ref_name: &str) -> Result<(), ImageError> {
        self.init()?;
        desc.annotations
            .insert(REF_NAME_ANNOTATION.into(), ref_name.into());
        self.change_index(|index| {
            index.manifests.retain(|m| m.ref_name() != Some(ref_name));
            index.manifests.push(desc);
        })
    }

    /// Reads index.json (an empty index when there is none), changes it
    /// and writes it back, under the index lock.
    fn change_index(&self, change: impl FnOnce(&mut Index)) -> Result<(), ImageError> {
        let _lock = self.lock_index()?;
        let mut index = self.index()?.unwrap_or(Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_INDEX.into()),
            manifests: Vec::new(),
        });
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
