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
    #[error("pushing {destination}: the registry refused the image index that carries the attestations; --provenance=false (and no --sbom) pushes the image alone")]
    IndexRefused {
        destination: String,
        #[source]
        source: Box<kiln_registry::RegistryError>,
    },
    #[error("fetching a base layer the outputs need")]
    Fetch(#[source] kiln_registry::RegistryError),
    #[error("describing what was built")]
    Describe(#[source] kiln_image::ImageError),
    #[error("a docker archive holds one platform's image: build one --platform for --tar-path, or use --oci-layout-path")]
    ArchiveOfIndex,
}

/// What was built: one image, or one per platform under an index.
#[derive(Debug, Clone)]
pub enum Built {
    Image(Box<BuiltImage>),
    Index {
        images: Vec<BuiltImage>,
        /// Each image's attestation manifest (none, or one per image).
        attestations: Vec<BuiltImage>,
        index: kiln_image::ImageIndex,
    },
}

impl Built {
    fn images(&self) -> &[BuiltImage] {
        match self {
            Built::Image(i) => std::slice::from_ref(i.as_ref()),
            Built::Index { images, .. } => images,
        }
    }

    /// The images, then their attestation manifests: every manifest the
    /// index names.
    fn manifests(&self) -> Vec<&BuiltImage> {
        match self {
            Built::Image(i) => vec![i.as_ref()],
            Built::Index {
                images,
                attestations,
                ..
            } => images.iter().chain(attestations).collect(),
        }
    }

    /// The digest that names the result: the manifest's, or the index's.
    pub fn digest(&self) -> &str {
        match self {
            Built::Image(i) => &i.manifest_digest,
            Built::Index { index, .. } => &index.digest,
        }
    }
}

fn fetch_layers(images: &[BuiltImage], registry: &RegistryOptions) -> Result<(), ExportError> {
    let client = kiln_registry::Client::new(registry.clone());
    for l in images.iter().flat_map(|i| &i.layers) {
        kiln_registry::pull::ensure_blob(&client, &l.path, l.source.as_deref(), &l.digest, l.size)
            .map_err(ExportError::Fetch)?;
    }
    Ok(())
}

/// Write what was built to every output, then the digest files.
pub fn export(
    built: &Built,
    outputs: &[Output],
    registry: &RegistryOptions,
    files: &DigestFiles,
) -> Result<(), ExportError> {
    let mut pushed: Vec<&Reference> = Vec::new();
    // Files need every layer's bytes: base layers no step read were never
    // downloaded. A registry output fetches only what the registry lacks.
    if outputs.iter().any(|o| !matches!(o, Output::Registry(_))) {
        fetch_layers(built.images(), registry)?;
    }
    for output in outputs {
        match output {
            Output::OciLayout { dir, ref_name } => {
                let layout = kiln_image::OciLayout::new(dir);
                match built {
                    Built::Image(image) => layout.write_image(image, ref_name),
                    Built::Index { index, .. } => {
                        let all: Vec<BuiltImage> = built.manifests().into_iter().cloned().collect();
                        layout.write_index(&all, index, ref_name)
                    }
                }
                .map_err(|source| ExportError::Layout {
                    dir: dir.clone(),
                    source,
                })?;
                tracing::info!("wrote OCI layout {} (ref {ref_name})", dir.display());
            }
            Output::DockerArchive { path, tags } => {
                let image = match built {
                    Built::Image(image) => image.as_ref(),
                    // One image with its attestations: the archive keeps
                    // the image (docker load has no place for the rest).
                    Built::Index { images, .. } if images.len() == 1 => {
                        tracing::info!(
                            "{}: attestations are not kept in a docker archive (--oci-layout-path or a push keeps them)",
                            path.display()
                        );
                        &images[0]
                    }
                    Built::Index { .. } => return Err(ExportError::ArchiveOfIndex),
                };
                write_archive(image, path, tags)?;
                tracing::info!("wrote docker archive {}", path.display());
            }
            Output::Registry(destinations) => {
                push_all(built, destinations, registry)?;
                pushed.extend(destinations);
            }
        }
    }
    let digest = built.digest();
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
    // docker's image ID is the config's digest; an index has none, and
    // buildx names it by its own digest.
    let (iid, media_type, size) = match built {
        Built::Image(i) => (
            &i.config_digest,
            kiln_image::manifest::MEDIA_TYPE_MANIFEST,
            i.manifest_bytes.len(),
        ),
        // One image with its attestations: docker's ID is still its config's.
        Built::Index { index, images, .. } if images.len() == 1 => (
            &images[0].config_digest,
            index.media_type.as_str(),
            index.bytes.len(),
        ),
        Built::Index { index, .. } => (&index.digest, index.media_type.as_str(), index.bytes.len()),
    };
    if let Some(path) = &files.iid {
        write(path, iid)?;
    }
    if let Some(path) = &files.metadata {
        let descriptor = kiln_image::oci::descriptor(media_type, digest, size as u64)
            .map_err(ExportError::Describe)?;
        let mut meta = serde_json::json!({
            "containerimage.digest": digest,
            "containerimage.descriptor": descriptor,
        });
        match built {
            Built::Image(i) => {
                meta["containerimage.config.digest"] = i.config_digest.clone().into()
            }
            Built::Index { images, .. } if images.len() == 1 => {
                meta["containerimage.config.digest"] = images[0].config_digest.clone().into()
            }
            Built::Index { .. } => {}
        }
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

/// Each destination gets the image, or each platform's image by digest
/// and then the index under the destination's tag.
fn push_all(
    built: &Built,
    destinations: &[Reference],
    registry: &RegistryOptions,
) -> Result<(), ExportError> {
    let client = Client::new(registry.clone());
    for dest in destinations {
        let failed = |source| ExportError::Push {
            destination: dest.to_string(),
            source,
        };
        let by_digest = dest.repository_only();
        let target = match built {
            Built::Image(_) => dest,
            Built::Index { .. } => &by_digest,
        };
        let images = built.manifests();
        for image in &images {
            let report = kiln_registry::push(&client, target, image).map_err(failed)?;
            tracing::info!(
                "pushed {target}@{} ({} blobs uploaded, {} mounted, {} already there)",
                image.manifest_digest,
                report.uploaded,
                report.mounted,
                report.existing
            );
        }
        if let Built::Index {
            index,
            images,
            attestations,
        } = built
        {
            kiln_registry::push::push_manifest(
                &client,
                dest,
                &index.bytes,
                &index.media_type,
                &index.digest,
            )
            .map_err(|source| match attestations.is_empty() {
                true => failed(source),
                // An index only because of the attestations: say how to
                // push the image alone.
                false => ExportError::IndexRefused {
                    destination: dest.to_string(),
                    source: Box::new(source),
                },
            })?;
            tracing::info!(
                "pushed {dest}@{} (an index of {} images, {} attestation manifests)",
                index.digest,
                images.len(),
                attestations.len()
            );
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), ExportError> {
    std::fs::write(path, text).map_err(|source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    })
}
