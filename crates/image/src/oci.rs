//! Descriptors, manifests and indexes are oci-spec's types (Docker schema 2
//! manifests and lists have the same shape); these are the few helpers
//! kiln needs around them: making a descriptor from strings, reading one
//! back as strings, parsing with an error that names what was read.

use crate::ImageError;
// oci-spec's ImageIndex and ImageManifest, named as kiln reads them (kiln's
// own `ImageIndex` is an index it built, with its bytes).
pub use oci_spec::image::{
    Descriptor, ImageIndex as Index, ImageManifest as Manifest, MediaType, Platform,
};

pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A descriptor of `size` bytes named `digest` (`algorithm:hex`).
pub fn descriptor(media_type: &str, digest: &str, size: u64) -> Result<Descriptor, ImageError> {
    let parsed: oci_spec::image::Digest = digest
        .parse()
        .map_err(|e| ImageError::invalid(format!("digest {digest:?}"), format!("{e}")))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, parsed))
}

/// A descriptor's digest as text (`sha256:<hex>`).
pub fn digest_of(d: &Descriptor) -> String {
    d.digest().to_string()
}

/// A descriptor's media type as text.
pub fn media_type_of(d: &Descriptor) -> String {
    d.media_type().to_string()
}

/// The `org.opencontainers.image.ref.name` annotation.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

/// A platform from its parts (an empty variant is none).
pub fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
    let mut p = Platform::default();
    p.set_os(os.into());
    p.set_architecture(architecture.into());
    p.set_variant(variant.filter(|v| !v.is_empty()).map(String::from));
    p
}

/// `os/arch[/variant]`.
pub fn platform_text(p: &Platform) -> String {
    match p.variant() {
        Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
        None => format!("{}/{}", p.os(), p.architecture()),
    }
}

/// An image manifest (OCI or Docker schema 2) from its bytes; `what`
/// names it in the error.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<Manifest, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::invalid(what, format!("manifest: {e}")))
}

/// An image index (OCI or a Docker manifest list) from its bytes.
pub fn parse_index(bytes: &[u8], what: &str) -> Result<Index, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::invalid(what, format!("index: {e}")))
}
