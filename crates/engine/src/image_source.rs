//! How a stage starts from an image: its manifest and config pulled (or
//! read from `--cache-dir`), its layers waiting in the stage.

use crate::error::StepFailure;
use crate::options::BuildOptions;
use crate::stage::{Layer, StageState, DEFAULT_PATH};
use kiln_dockerfile::Platform;
use kiln_image::manifest::{MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR};
use kiln_image::{ImageConfig, LayerBlob};
use kiln_registry::{BlobStore, Client, Reference, WantedPlatform};

fn wanted(platform: &Platform) -> WantedPlatform {
    WantedPlatform {
        os: platform.os.clone(),
        architecture: platform.arch.clone(),
        variant: platform.variant.clone(),
    }
}

/// An image's config alone, no layer read (`--cache-dir` first, else the
/// registry): what build checks need to know of a base image.
pub fn image_config(
    opts: &BuildOptions,
    reference: &str,
    platform: &Platform,
) -> Result<ImageConfig, StepFailure> {
    let client = Client::new(opts.registry.clone());
    let blob_store = BlobStore::new(opts.kiln_dir.join("blobs"));
    let source = ImageSource {
        opts,
        client: &client,
        blob_store: &blob_store,
        now: 0,
    };
    let (pulled, _) = source.pulled(&Reference::parse(reference)?, platform)?;
    Ok(pulled.config)
}

/// Where images come from: `--cache-dir`, else the registry.
pub(crate) struct ImageSource<'a> {
    pub opts: &'a BuildOptions,
    pub client: &'a Client,
    pub blob_store: &'a BlobStore,
    pub now: i64,
}

impl ImageSource<'_> {
    /// The image's manifest and config, no layer downloaded: from
    /// `--cache-dir` (then `true`), else the registry.
    fn pulled(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<(kiln_registry::PulledImage, bool), StepFailure> {
        if let Some(dir) = &self.opts.cache_dir {
            if let Some(p) = kiln_registry::local::load_local(dir, r)? {
                return Ok((p, true));
            }
        }
        let wanted = wanted(platform);
        let pulled = kiln_registry::pull::pull_lazily(self.client, self.blob_store, r, &wanted)?;
        Ok((pulled, false))
    }

    /// The state an image starts a stage with: its config and layers, none
    /// downloaded or extracted yet ([`StageState::force`] does that when a
    /// step reads the files); and the manifest digest it resolved to.
    pub fn stage_state(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<(StageState, String), StepFailure> {
        let r = Reference::parse(reference)?;
        let (pulled, local) = self.pulled(&r, platform)?;
        if local {
            tracing::info!("using {r} from --cache-dir");
        }
        let diff_ids = pulled.config.rootfs.diff_ids.clone();
        if diff_ids.len() != pulled.layers.len() {
            return Err(format!(
                "{r}: the config lists {} layers, the manifest {}",
                diff_ids.len(),
                pulled.layers.len()
            )
            .into());
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in pulled.layers.iter().zip(&diff_ids) {
            let what = format!("layer {} of {r}", layer.digest);
            let media_type = oci_layer_media_type(&layer.media_type)
                .ok_or_else(|| format!("{what}: unsupported media type {:?}", layer.media_type))?;
            layers.push(Layer {
                dir: None,
                blob: LayerBlob {
                    digest: layer.digest.clone(),
                    diff_id: diff_id.clone(),
                    size: layer.size,
                    uncompressed_size: 0,
                    media_type,
                    path: layer.path.clone(),
                    source: Some(pulled.source.name()),
                },
            });
        }
        let mut config = pulled.config;
        if config.config.env_get("PATH").is_none() {
            config.config.env_set("PATH", DEFAULT_PATH);
        }
        if config.architecture != platform.arch || config.os != platform.os {
            tracing::warn!(
                "{r} is {}/{}, not the requested {}/{}",
                config.os,
                config.architecture,
                platform.os,
                platform.arch
            );
        }
        let key = format!("image:{}", pulled.manifest_digest);
        Ok((
            StageState::starting(config, layers, key, self.now),
            pulled.manifest_digest,
        ))
    }
}

/// The OCI media type of a layer blob (docker's names map to OCI's).
fn oci_layer_media_type(media_type: &str) -> Option<String> {
    Some(
        match media_type {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.v1.tar+gzip" => MEDIA_TYPE_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.oci.image.layer.v1.tar" => MEDIA_TYPE_LAYER_TAR,
            "application/vnd.oci.image.layer.v1.tar+zstd" => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            _ => return None,
        }
        .to_string(),
    )
}
