//! What the registry tests share: a one-file image, the platform they
//! pull, plain HTTP to the test registry.

use kiln_image::{BuiltImage, ImageConfig, LayerBlob};
use kiln_layer::{write_layer, Content, Entry, FileKind, LayerOptions};
use kiln_registry::{RegistryOptions, WantedPlatform};
use kiln_test_support::TestRegistry;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn image(dir: &std::path::Path, text: &str) -> BuiltImage {
    let entry = Entry {
        path: "hello.txt".into(),
        kind: FileKind::File {
            content: Content::Bytes(Arc::new(text.as_bytes().to_vec())),
            size: text.len() as u64,
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
    };
    let info = write_layer(vec![entry], dir, &LayerOptions::default()).unwrap();
    let layer = LayerBlob {
        digest: format!("sha256:{}", info.digest),
        diff_id: format!("sha256:{}", info.diff_id),
        size: info.size,
        uncompressed_size: info.uncompressed_size,
        media_type: kiln_image::manifest::MEDIA_TYPE_LAYER_GZIP.into(),
        path: info.path,
        source: None,
    };
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    };
    BuiltImage::new(config, vec![layer]).unwrap()
}

pub fn platform() -> WantedPlatform {
    WantedPlatform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

pub fn insecure(reg: &TestRegistry) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: vec![reg.addr.clone()],
        ..Default::default()
    }
}
