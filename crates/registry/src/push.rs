//! Pushing an image: each blob is checked with HEAD (present: skipped),
//! mounted from the repository it came from when that is on the same
//! registry (a declined mount falls back to an upload), or uploaded
//! streaming from its file; several at a time. The config and then the
//! manifest follow only when every layer is in place.

use crate::client::{status_error, Access, Call, Client};
use crate::reference::Reference;
use crate::RegistryError;
use kiln_image::manifest::MEDIA_TYPE_MANIFEST;
use kiln_image::BuiltImage;
use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub uploaded: usize,
    pub mounted: usize,
    pub existing: usize,
}

enum BlobData<'a> {
    /// A layer's file, fetched from `source` first if it was never
    /// downloaded (only when the registry needs the bytes).
    Layer {
        path: &'a Path,
        source: Option<&'a str>,
    },
    Bytes(&'a [u8]),
}

struct Counters {
    uploaded: AtomicUsize,
    mounted: AtomicUsize,
    existing: AtomicUsize,
}

/// Push `image` to `dest`; returns what happened to the blobs.
pub fn push(
    client: &Client,
    dest: &Reference,
    image: &BuiltImage,
) -> Result<PushReport, RegistryError> {
    let counters = Counters {
        uploaded: AtomicUsize::new(0),
        mounted: AtomicUsize::new(0),
        existing: AtomicUsize::new(0),
    };
    const PARALLEL: usize = 3;
    let next = AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(image.layers.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(layer) = image.layers.get(i) else {
                    break;
                };
                let from = layer
                    .source
                    .as_deref()
                    .and_then(|s| Reference::parse(s).ok());
                let data = BlobData::Layer {
                    path: &layer.path,
                    source: layer.source.as_deref(),
                };
                if let Err(e) = push_blob(
                    client,
                    dest,
                    &layer.digest,
                    layer.size,
                    data,
                    from.as_ref(),
                    &counters,
                ) {
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                }
            });
        }
    });
    if let Some(e) = errors
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .next()
    {
        // No manifest is pushed unless every blob is there.
        return Err(e);
    }
    push_blob(
        client,
        dest,
        &image.config_digest,
        image.config_bytes.len() as u64,
        BlobData::Bytes(&image.config_bytes),
        None,
        &counters,
    )?;
    push_manifest(
        client,
        dest,
        &image.manifest_bytes,
        MEDIA_TYPE_MANIFEST,
        &image.manifest_digest,
    )?;
    Ok(PushReport {
        uploaded: counters.uploaded.into_inner(),
        mounted: counters.mounted.into_inner(),
        existing: counters.existing.into_inner(),
    })
}

/// Puts blob `digest` of repository `source` (`registry/repository`)
/// into `dest`'s repository: nothing when it is there, mounted when both
/// are on one registry, else fetched into `path` (a blob store's file)
/// and uploaded.
pub fn copy_blob(
    client: &Client,
    dest: &Reference,
    digest: &str,
    size: u64,
    path: &Path,
    source: &str,
) -> Result<(), RegistryError> {
    let counters = Counters {
        uploaded: AtomicUsize::new(0),
        mounted: AtomicUsize::new(0),
        existing: AtomicUsize::new(0),
    };
    let from = Reference::parse(source).ok();
    let data = BlobData::Layer {
        path,
        source: Some(source),
    };
    push_blob(client, dest, digest, size, data, from.as_ref(), &counters)
}

pub(crate) fn call<'a>(dest: &'a Reference, from: Option<&Reference>, what: String) -> Call<'a> {
    let mut scopes = vec![dest.scope(Access::Push)];
    if let Some(f) = from {
        scopes.push(f.scope(Access::Pull));
    }
    Call {
        registry: &dest.registry,
        api_host: dest.api_host(),
        scopes,
        access: Access::Push,
        what,
    }
}

fn push_blob(
    client: &Client,
    dest: &Reference,
    digest: &str,
    size: u64,
    data: BlobData,
    from: Option<&Reference>,
    counters: &Counters,
) -> Result<(), RegistryError> {
    // Mount only within one registry, from another repository.
    let from = from.filter(|f| f.registry == dest.registry && f.repository != dest.repository);
    let what = format!("blob {digest} to {}", dest.name());
    let c = call(dest, from, what.clone());
    if has_blob(client, &c, dest, digest)? {
        counters.existing.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("{what}: already there");
        return Ok(());
    }
    let start_path = match from {
        Some(f) => format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={}",
            dest.repository, f.repository
        ),
        None => format!("/v2/{}/blobs/uploads/", dest.repository),
    };
    let started = client.send(&c, &|h, base| {
        h.post(format!("{base}{start_path}"))
            .header(CONTENT_LENGTH, "0")
    })?;
    if started.status() == StatusCode::CREATED && from.is_some() {
        counters.mounted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("{what}: mounted");
        return Ok(());
    }
    if started.status() != StatusCode::ACCEPTED {
        return Err(status_error(&what, started));
    }
    if let BlobData::Layer { path, source } = &data {
        crate::pull::ensure_blob(client, path, *source, digest, size)?;
    }
    let location = upload_url(client, dest, &started, &what)?;
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = format!("{location}{sep}digest={digest}");
    let done = client.send(&c, &|h, _| {
        let body = match &data {
            BlobData::Bytes(b) => Body::from(b.to_vec()),
            BlobData::Layer { path: p, .. } => match std::fs::File::open(p) {
                Ok(f) => Body::sized(f, size),
                Err(_) => Body::from(Vec::new()),
            },
        };
        h.put(&put_url)
            .timeout(crate::client::UPLOAD_TIMEOUT)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size.to_string())
            .body(body)
    })?;
    if done.status() != StatusCode::CREATED {
        return Err(status_error(&what, done));
    }
    counters.uploaded.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("{what}: uploaded");
    Ok(())
}

/// Whether `dest`'s repository has blob `digest` (HEAD).
pub(crate) fn has_blob(
    client: &Client,
    c: &Call,
    dest: &Reference,
    digest: &str,
) -> Result<bool, RegistryError> {
    let path = format!("/v2/{}/blobs/{digest}", dest.repository);
    let head = client.send(c, &|h, base| h.head(format!("{base}{path}")))?;
    Ok(head.status().is_success())
}

pub(crate) fn upload_url(
    client: &Client,
    dest: &Reference,
    resp: &reqwest::blocking::Response,
    what: &str,
) -> Result<String, RegistryError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Transport {
            what: what.to_string(),
            message: "upload started without a Location".into(),
        })?;
    Ok(
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{loc}", client.base_url(&dest.registry, dest.api_host()))
        },
    )
}

/// PUT a manifest or index at `dest`'s tag, or by digest when it has
/// none (an index's images go by digest, then the index by tag). The
/// caller has pushed everything it names.
pub fn push_manifest(
    client: &Client,
    dest: &Reference,
    bytes: &[u8],
    media_type: &str,
    digest: &str,
) -> Result<(), RegistryError> {
    let what = format!("manifest {dest}");
    let c = call(dest, None, what.clone());
    let path = format!(
        "/v2/{}/manifests/{}",
        dest.repository,
        dest.tag.as_deref().unwrap_or(digest)
    );
    let resp = client.send(&c, &|h, base| {
        h.put(format!("{base}{path}"))
            .header(CONTENT_TYPE, media_type)
            .body(bytes.to_vec())
    })?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error(&what, resp));
    }
    if let Some(d) = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
    {
        if d != digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: d.to_string(),
            });
        }
    }
    Ok(())
}
