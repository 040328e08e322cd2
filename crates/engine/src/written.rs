//! A layer kiln wrote, as an image names it.

use kiln_image::LayerBlob;

/// The image's record of a layer kiln wrote: digests, sizes, media type
/// and the blob's file (no registry to fetch it from).
pub(crate) fn blob_of(info: kiln_layer::LayerInfo) -> LayerBlob {
    LayerBlob {
        digest: format!("sha256:{}", info.digest),
        diff_id: format!("sha256:{}", info.diff_id),
        size: info.size,
        uncompressed_size: info.uncompressed_size,
        media_type: info.compression.media_type().into(),
        path: info.path,
        source: None,
    }
}
