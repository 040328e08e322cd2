//! Where a built image goes: one exporter per output, chosen by flags
//! (a closed set: an enum), run by one `export()`. Files that name the
//! result (`--digest-file` and Kaniko's image-name files) are written last.

use kiln_image::BuiltImage;
use kiln_registry::{Client, Reference, RegistryOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Output {
    /// Push to each destination (manifest after its blobs).
    Registry(Vec<Reference>),
    /// An OCI image layout, the manifest tagged `ref_name`.
    OciLayout { dir: PathBuf, ref_name: String },
    /// A `docker load` archive naming `tags`.
    DockerArchive { path: PathBuf, tags: Vec<String> },
}

/// Files that name what was built.
#[derive(Debug, Clone, Default)]
pub struct DigestFiles {
    /// The manifest digest.
    pub digest: Option<PathBuf>,
    /// `name@digest` per pushed destination.
    pub name_with_digest: Option<PathBuf>,
    /// `name:tag@digest` per pushed destination.
    pub name_tag_with_digest: Option<PathBuf>,
    /// docker's image ID: the config digest (`--iidfile`).
    pub iid: Option<PathBuf>,
    /// BuildKit's metadata JSON (`--metadata-file`): `containerimage.digest`,
    /// `containerimage.config.digest`, `containerimage.descriptor`, and
    /// `image.name` (the names given, comma-separated).
    pub metadata: Option<PathBuf>,
    /// The names `image.name` lists.
    pub names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing OCI layout {}", dir.display())]
    Layout {
        dir: PathBuf,
        #[source]
        source: kiln_image::ImageError,
    },
    #[error("writing docker archive {}", path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: kiln_image::ImageError,
    },
    #[error("pushing {destination}")]
    Push {
        destination: String,
        #[source]
        source: kiln_registry::RegistryError,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching a base layer the outputs need")]
    Fetch(#[source] kiln_registry::RegistryError),
}

/// Write `image` to every output, then the digest files.
fn fetch_layers(image: &BuiltImage, registry: &RegistryOptions) -> Result<(), ExportError> {
    let client = kiln_registry::Client::new(registry.clone());
    for l in &image.layers {
        kiln_registry::pull::ensure_blob(&client, &l.path, l.source.as_deref(), &l.digest, l.size)
            .map_err(ExportError::Fetch)?;
    }
    Ok(())
}

pub fn export(
    image: &BuiltImage,
    outputs: &[Output],
    registry: &RegistryOptions,
    files: &DigestFiles,
) -> Result<(), ExportError> {
    let mut pushed: Vec<&Reference> = Vec::new();
    // Files need every layer's bytes: base layers no step read were never
    // downloaded. A registry output fetches only what the registry lacks.
    if outputs.iter().any(|o| !matches!(o, Output::Registry(_))) {
        fetch_layers(image, registry)?;
    }
    for output in outputs {
        match output {
            Output::OciLayout { dir, ref_name } => {
                kiln_image::layout::write_oci_layout(dir, image, ref_name).map_err(|source| {
                    ExportError::Layout {
                        dir: dir.clone(),
                        source,
                    }
                })?;
                tracing::info!("wrote OCI layout {} (ref {ref_name})", dir.display());
            }
            Output::DockerArchive { path, tags } => {
                write_archive(image, path, tags)?;
                tracing::info!("wrote docker archive {}", path.display());
            }
            Output::Registry(destinations) => {
                push_all(image, destinations, registry)?;
                pushed.extend(destinations);
            }
        }
    }
    let digest = &image.manifest_digest;
    if !pushed.is_empty() {
        let lines = |f: &dyn Fn(&Reference) -> String| -> String {
            pushed.iter().map(|d| f(d) + "\n").collect()
        };
        if let Some(path) = &files.name_with_digest {
            write(path, &lines(&|d| format!("{}@{digest}", d.name())))?;
        }
        if let Some(path) = &files.name_tag_with_digest {
            write(
                path,
                &lines(&|d| {
                    let tag = d.tag.as_deref().unwrap_or("latest");
                    format!("{}:{tag}@{digest}", d.name())
                }),
            )?;
        }
    }
    if let Some(path) = &files.digest {
        write(path, digest)?;
    }
    if let Some(path) = &files.iid {
        write(path, &image.config_digest)?;
    }
    if let Some(path) = &files.metadata {
        let mut meta = serde_json::json!({
            "containerimage.digest": digest,
            "containerimage.config.digest": image.config_digest,
            "containerimage.descriptor": {
                "mediaType": kiln_image::manifest::MEDIA_TYPE_MANIFEST,
                "digest": digest,
                "size": image.manifest_bytes.len(),
            },
        });
        if !files.names.is_empty() {
            meta["image.name"] = files.names.join(",").into();
        }
        write(path, &format!("{meta:#}\n"))?;
    }
    Ok(())
}

fn write_archive(image: &BuiltImage, path: &Path, tags: &[String]) -> Result<(), ExportError> {
    let open_tar = |layer: &kiln_image::LayerBlob| -> std::io::Result<Box<dyn std::io::Read>> {
        let file = std::fs::File::open(&layer.path)?;
        Ok(kiln_layer::open_archive(file)?.1)
    };
    kiln_image::docker_archive::write_docker_archive(path, image, tags, &open_tar).map_err(
        |source| ExportError::Archive {
            path: path.to_path_buf(),
            source,
        },
    )
}

fn push_all(
    image: &BuiltImage,
    destinations: &[Reference],
    registry: &RegistryOptions,
) -> Result<(), ExportError> {
    let client = Client::new(registry.clone());
    for dest in destinations {
        let report =
            kiln_registry::push(&client, dest, image).map_err(|source| ExportError::Push {
                destination: dest.to_string(),
                source,
            })?;
        tracing::info!(
            "pushed {dest}@{} ({} blobs uploaded, {} mounted, {} already there)",
            image.manifest_digest,
            report.uploaded,
            report.mounted,
            report.existing
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), ExportError> {
    std::fs::write(path, text).map_err(|source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    })
}
