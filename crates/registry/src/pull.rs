//! Pulling an image: the manifest by Accept (OCI and Docker schema 2, image
//! indexes and manifest lists with platform selection), then the config and
//! layers, each verified against its digest, layers several at a time.
//! Mirrors and registry maps are tried first, with Kaniko's fallback rules.

use crate::client::{status_error, Access, Call, Client};
use crate::reference::{Reference, DOCKER_HUB};
use crate::store::{touch, BlobStore};
use crate::RegistryError;
use kiln_image::oci::{digest_of, media_type_of, parse_index, parse_manifest, Index, Manifest};
use kiln_image::ImageConfig;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use std::path::{Path, PathBuf};

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// The platform to select from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedPlatform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PulledLayer {
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PulledImage {
    /// Where it came from (a mirror, maybe), pinned to the manifest digest.
    pub source: Reference,
    pub manifest_digest: String,
    /// The platform manifest as served.
    pub manifest_bytes: Vec<u8>,
    pub manifest_media_type: String,
    pub config: ImageConfig,
    pub layers: Vec<PulledLayer>,
}

/// The references to try for `reference`: maps, then docker.io mirrors,
/// then the registry itself unless fallback is off.
pub fn candidates(client: &Client, reference: &Reference) -> Vec<Reference> {
    let o = &client.options;
    let mut out = Vec::new();
    for (orig, mirrors) in &o.registry_maps {
        let orig = if orig == "index.docker.io" {
            DOCKER_HUB
        } else {
            orig.as_str()
        };
        if orig == reference.registry {
            out.extend(mirrors.iter().map(|m| reference.on_registry(m)));
        }
    }
    if reference.registry == DOCKER_HUB {
        out.extend(o.mirrors.iter().map(|m| reference.on_registry(m)));
    }
    if out.is_empty() || !o.skip_default_registry_fallback {
        out.push(reference.clone());
    }
    out
}

pub fn pull(
    client: &Client,
    store: &BlobStore,
    reference: &Reference,
    platform: &WantedPlatform,
) -> Result<PulledImage, RegistryError> {
    pull_with(client, store, reference, platform, true)
}

/// As [`pull`], without downloading any layer: each layer's `path` is
/// where [`fetch_blob`] from `source` puts it (it may be there already).
/// For builds that read a base layer only when a step needs its files.
pub fn pull_lazily(
    client: &Client,
    store: &BlobStore,
    reference: &Reference,
    platform: &WantedPlatform,
) -> Result<PulledImage, RegistryError> {
    pull_with(client, store, reference, platform, false)
}

fn pull_with(
    client: &Client,
    store: &BlobStore,
    reference: &Reference,
    platform: &WantedPlatform,
    download: bool,
) -> Result<PulledImage, RegistryError> {
    let mut last = None;
    let list = candidates(client, reference);
    let n = list.len();
    for (i, candidate) in list.into_iter().enumerate() {
        match pull_from(client, store, &candidate, platform, download) {
            Ok(p) => return Ok(p),
            Err(e) if i + 1 < n => {
                tracing::warn!("pulling {candidate} failed ({e}); trying the next registry");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last
        .unwrap_or_else(|| RegistryError::Config(format!("no registry to pull {reference} from"))))
}

/// GET a manifest; returns bytes, media type and digest.
pub fn fetch_manifest(
    client: &Client,
    r: &Reference,
    by: &str,
) -> Result<(Vec<u8>, String, String), RegistryError> {
    // A digest is written after `@`, a tag after `:`.
    let sep = if by.contains(':') { '@' } else { ':' };
    let what = format!("manifest {}{sep}{by}", r.name());
    let call = pull_call(r, &what);
    let path = format!("/v2/{}/manifests/{by}", r.repository);
    let resp = client.send(&call, &|h, base| {
        h.get(format!("{base}{path}"))
            .header(ACCEPT, MANIFEST_ACCEPT)
    })?;
    if !resp.status().is_success() {
        return Err(status_error(&what, resp));
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let bytes = resp.bytes().map_err(|e| RegistryError::Transport {
        what: what.clone(),
        message: crate::client::transport_message(&e),
    })?;
    if bytes.len() > 4 << 20 {
        return Err(RegistryError::Unsupported {
            what,
            message: "manifest larger than 4 MiB".into(),
        });
    }
    let digest = kiln_image::sha256_digest(&bytes);
    if by.starts_with("sha256:") && digest != by {
        return Err(RegistryError::DigestMismatch {
            what,
            expected: by.to_string(),
            actual: digest,
        });
    }
    let head: ManifestHead =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Unsupported {
            what: what.clone(),
            message: format!("not JSON: {e}"),
        })?;
    let media_type = head
        .media_type
        .filter(|m| !m.is_empty())
        .unwrap_or(content_type);
    Ok((bytes.to_vec(), media_type, digest))
}

/// What a manifest says of its kind before it is read as one: its media
/// type, its schema version, whether it lists manifests (an index).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ManifestHead {
    media_type: Option<String>,
    schema_version: Option<u32>,
    manifests: Option<serde::de::IgnoredAny>,
}

impl ManifestHead {
    fn of(bytes: &[u8]) -> ManifestHead {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    fn is_index(&self, media_type: &str) -> bool {
        media_type.contains("index")
            || media_type.contains("manifest.list")
            || self.manifests.is_some()
    }
}

/// A platform manifest and its config: what a build needs to know about
/// an image before reading any layer.
struct Resolved {
    bytes: Vec<u8>,
    media_type: String,
    digest: String,
    manifest: Manifest,
    config: ImageConfig,
}

fn resolve(
    client: &Client,
    store: &BlobStore,
    r: &Reference,
    platform: &WantedPlatform,
) -> Result<Resolved, RegistryError> {
    let (mut bytes, mut media_type, mut digest) = fetch_manifest(client, r, r.manifest_ref())?;
    let mut head = ManifestHead::of(&bytes);
    if head.is_index(&media_type) {
        let index = parse_index(&bytes, &r.to_string())?;
        let chosen = select_platform(&index, platform).ok_or_else(|| RegistryError::NotFound {
            what: format!("{r}"),
            message: format!(
                "no image for platform {}/{}{} in the index",
                platform.os,
                platform.architecture,
                platform
                    .variant
                    .as_ref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            ),
        })?;
        (bytes, media_type, digest) = fetch_manifest(client, r, &chosen)?;
        head = ManifestHead::of(&bytes);
    }
    if media_type.contains("distribution.manifest.v1") || head.schema_version == Some(1) {
        return Err(RegistryError::Unsupported {
            what: r.to_string(),
            message: "Docker schema 1 manifests are not supported".into(),
        });
    }
    let what = |d: &str| format!("blob {}@{d}", r.name());
    let manifest = parse_manifest(&bytes, &r.to_string())?;
    let config_digest = digest_of(manifest.config());
    let config_path = fetch_blob(
        client,
        store,
        r,
        &config_digest,
        Some(manifest.config().size()),
    )?;
    let config_bytes = std::fs::read(&config_path)
        .map_err(|e| RegistryError::io(format!("reading {}", config_path.display()), e))?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| RegistryError::Unsupported {
            what: what(&config_digest),
            message: format!("image config: {e}"),
        })?;

    Ok(Resolved {
        bytes,
        media_type,
        digest,
        manifest,
        config,
    })
}

fn pull_from(
    client: &Client,
    store: &BlobStore,
    r: &Reference,
    platform: &WantedPlatform,
    download: bool,
) -> Result<PulledImage, RegistryError> {
    let Resolved {
        bytes,
        media_type,
        digest,
        manifest,
        config,
    } = resolve(client, store, r, platform)?;
    let mut wanted = Vec::new();
    for l in manifest.layers() {
        let (d, size, mt) = (digest_of(l), l.size(), media_type_of(l));
        if !d.starts_with("sha256:") {
            return Err(RegistryError::Unsupported {
                what: r.to_string(),
                message: format!("layer digest {d:?} is not sha256"),
            });
        }
        wanted.push((d, size, mt));
    }
    let paths = match download {
        true => download_all(client, store, r, &wanted)?,
        false => wanted.iter().map(|(d, _, _)| store.path(d)).collect(),
    };
    let layers = wanted
        .into_iter()
        .zip(paths)
        .map(|((digest, size, media_type), path)| PulledLayer {
            digest,
            size,
            media_type,
            path,
        })
        .collect();
    Ok(PulledImage {
        source: r.with_digest(&digest),
        manifest_digest: digest,
        manifest_bytes: bytes,
        manifest_media_type: media_type,
        config,
        layers,
    })
}

/// Index entry matching the platform (variant optional when not asked).
fn select_platform(index: &Index, p: &WantedPlatform) -> Option<String> {
    let manifests = index.manifests();
    let matches = |m: &&kiln_image::oci::Descriptor, strict_variant: bool| {
        let Some(pl) = m.platform() else {
            return false;
        };
        let variant = pl.variant().as_deref().unwrap_or("");
        pl.os().to_string() == p.os
            && pl.architecture().to_string() == p.architecture
            && match (&p.variant, strict_variant) {
                (Some(v), true) => variant == v,
                (Some(v), false) => variant.is_empty() || variant == v,
                (None, _) => true,
            }
    };
    manifests
        .iter()
        .find(|m| matches(m, true))
        .or_else(|| manifests.iter().find(|m| matches(m, false)))
        .map(digest_of)
}

/// Download one blob into the store (skipped when already there).
pub fn fetch_blob(
    client: &Client,
    store: &BlobStore,
    r: &Reference,
    digest: &str,
    size: Option<u64>,
) -> Result<PathBuf, RegistryError> {
    if store.contains(digest) {
        let path = store.path(digest);
        touch(&path);
        return Ok(path);
    }
    let what = format!("blob {}@{digest}", r.name());
    let call = pull_call(r, &what);
    let path = format!("/v2/{}/blobs/{digest}", r.repository);
    let mut attempt = 0;
    loop {
        let mut resp = client.send(&call, &|h, base| h.get(format!("{base}{path}")))?;
        if !resp.status().is_success() {
            return Err(status_error(&what, resp));
        }
        tracing::debug!("downloading {what}");
        match store.write_verified(digest, size, &mut resp, &what) {
            // A connection that breaks mid-blob is retried like any transient failure.
            Err(RegistryError::Transport { .. }) if attempt < client.options.pull_retries => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(500u64 << attempt.min(5)));
            }
            other => return other,
        }
    }
}

/// Makes sure a layer's file is there: when `path` (a file of a blob
/// store) is missing, downloads the blob into that store from `source`,
/// the repository it was pulled from. Layers are fetched this lazily so a
/// build reads only the base layers it needs.
pub fn ensure_blob(
    client: &Client,
    path: &Path,
    source: Option<&str>,
    digest: &str,
    size: u64,
) -> Result<(), RegistryError> {
    if path.is_file() {
        touch(path);
        return Ok(());
    }
    let (store, r) = blob_source(path, source, digest)?;
    fetch_blob(client, &store, &r, digest, Some(size)).map(|_| ())
}

/// A pull request from repository `r`, `what` naming it in errors.
fn pull_call<'a>(r: &'a Reference, what: &str) -> Call<'a> {
    Call {
        registry: &r.registry,
        api_host: r.api_host(),
        scopes: vec![r.scope(Access::Pull)],
        access: Access::Pull,
        what: what.to_string(),
    }
}

/// The store `path` is a file of and the repository `source` names.
fn blob_source(
    path: &Path,
    source: Option<&str>,
    digest: &str,
) -> Result<(BlobStore, Reference), RegistryError> {
    let missing = || {
        RegistryError::Config(format!(
            "blob {digest}: {} is missing and nothing says where to fetch it",
            path.display()
        ))
    };
    let store = path
        .parent()
        .and_then(Path::parent)
        .map(BlobStore::new)
        .filter(|s| s.path(digest) == path)
        .ok_or_else(missing)?;
    let r = Reference::parse(source.ok_or_else(missing)?)
        .map_err(|e| RegistryError::Config(format!("blob {digest}: {e}")))?;
    Ok((store, r))
}

/// Blob `digest` read as it downloads from `source` (one attempt, no
/// retry: a caller that sees it fail fetches with [`ensure_blob`]). With
/// `keep`, each byte is also written to the store at `path` and the blob
/// checked against its digest; without, only its size is checked here:
/// the caller checks what it decompresses against the layer's diff_id,
/// which covers every byte it uses. A layer's extraction starts with the
/// first bytes instead of after the last.
pub fn open_blob(
    client: &Client,
    path: &Path,
    source: Option<&str>,
    digest: &str,
    size: u64,
    keep: bool,
) -> Result<BlobDownload, RegistryError> {
    let (store, r) = blob_source(path, source, digest)?;
    let what = format!("blob {}@{digest}", r.name());
    let call = pull_call(&r, &what);
    let url = format!("/v2/{}/blobs/{digest}", r.repository);
    let resp = client.send(&call, &|h, base| h.get(format!("{base}{url}")))?;
    if !resp.status().is_success() {
        return Err(status_error(&what, resp));
    }
    tracing::debug!(
        "downloading {what} into its extraction{}",
        if keep {
            ""
        } else {
            " (not stored: no output needs it)"
        }
    );
    let passing = match keep {
        true => Passing::Stored(Box::new(store.writer(digest, Some(size), &what)?)),
        false => Passing::Counted { got: 0, size },
    };
    Ok(BlobDownload {
        passing: Some(passing),
        resp,
        finished: None,
        what,
    })
}

/// Where a download's bytes go besides its reader.
enum Passing {
    /// Into the store, verified.
    Stored(Box<crate::store::BlobWriter>),
    /// Nowhere: only counted, its size checked at the end.
    Counted { got: u64, size: u64 },
}

/// A blob's bytes as they arrive, stored and verified as they pass, or
/// only counted: at the end, a digest or size that does not match is a
/// read error, and nothing is stored.
pub struct BlobDownload {
    resp: reqwest::blocking::Response,
    passing: Option<Passing>,
    /// Where the verified blob was stored (`None`: it was not kept).
    finished: Option<Result<Option<PathBuf>, String>>,
    /// The blob and where it comes from, for errors.
    what: String,
}

impl std::io::Read for BlobDownload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.resp.read(buf)?;
        let result = if n > 0 {
            match self.passing.as_mut() {
                Some(Passing::Stored(writer)) => writer.update(&buf[..n]),
                Some(Passing::Counted { got, .. }) => {
                    *got += n as u64;
                    Ok(())
                }
                None => return Ok(n),
            }
        } else {
            let finished = match self.passing.take() {
                Some(Passing::Stored(w)) => w.finish().map(Some),
                Some(Passing::Counted { got, size }) if got != size => {
                    Err(RegistryError::DigestMismatch {
                        what: self.what.clone(),
                        expected: format!("{size} bytes"),
                        actual: format!("{got} bytes"),
                    })
                }
                Some(Passing::Counted { .. }) => Ok(None),
                None => return Ok(0),
            };
            finished.map(|stored| self.finished = Some(Ok(stored)))
        };
        result.map(|()| n).map_err(|e| {
            self.passing = None;
            self.finished = Some(Err(e.to_string()));
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
        })
    }
}

impl BlobDownload {
    /// Reads what is left (a layer's tar can end before its blob does)
    /// and returns where the verified blob is stored, if it was kept.
    pub fn finish(&mut self) -> Result<Option<PathBuf>, RegistryError> {
        let drained = std::io::copy(self, &mut std::io::sink());
        let broke = |message: String| RegistryError::Transport {
            what: self.what.clone(),
            message,
        };
        if let Err(e) = drained {
            return Err(broke(format!("download broke: {e}")));
        }
        match self.finished.take() {
            Some(Ok(path)) => Ok(path),
            Some(Err(message)) => Err(broke(message)),
            None => Err(broke("the download ended before its end".into())),
        }
    }
}

/// Download several blobs, a few at a time, in order of the list.
fn download_all(
    client: &Client,
    store: &BlobStore,
    r: &Reference,
    wanted: &[(String, u64, String)],
) -> Result<Vec<PathBuf>, RegistryError> {
    const PARALLEL: usize = 3;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<PathBuf, RegistryError>>>> =
        wanted.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(wanted.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((d, size, _)) = wanted.get(i) else {
                    break;
                };
                let r = fetch_blob(client, store, r, d, Some(*size));
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(RegistryError::Config("download did not run".into())))
        })
        .collect()
}
