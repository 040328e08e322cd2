//! Cache entries in a real registry.

use kiln_test_support as support;

use kiln_cache::{KeyParts, LayerCache, NewEntry, RegistryCache};
use kiln_image::LayerBlob;
use kiln_layer::{write_layer, Content, Entry, FileKind, LayerOptions};
use kiln_registry::{BlobStore, Client, Reference, RegistryOptions};
use std::collections::BTreeMap;
use std::sync::Arc;
use support::{Options, TestRegistry};

fn layer(dir: &std::path::Path) -> LayerBlob {
    let e = Entry {
        path: "made-by-run".into(),
        kind: FileKind::File {
            content: Content::Bytes(Arc::new(b"cached".to_vec())),
            size: 6,
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
    };
    let info = write_layer(vec![e], dir, &LayerOptions::default()).unwrap();
    LayerBlob {
        digest: format!("sha256:{}", info.digest),
        diff_id: format!("sha256:{}", info.diff_id),
        size: info.size,
        uncompressed_size: info.uncompressed_size,
        media_type: kiln_image::manifest::MEDIA_TYPE_LAYER_GZIP.into(),
        path: info.path,
        source: None,
    }
}

#[test]
fn store_lookup_expiry_and_empty_steps() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let client = Client::new(RegistryOptions {
        insecure_registries: vec![reg.addr.clone()],
        ..Default::default()
    });
    let store = BlobStore::new(work.path().join("store"));
    let cache = RegistryCache {
        client: std::sync::Arc::new(client),
        store,
        repo: Reference::parse(&format!("{}/team/app/cache", reg.addr)).unwrap(),
        ttl: 3600,
    };
    let parts = KeyParts {
        parent: "scratch".into(),
        instruction: "RUN /bin/sh -c make".into(),
        platform: "linux/amd64".into(),
        ..Default::default()
    };
    let key = parts.key();
    assert!(
        cache.lookup(&key, 1000).unwrap().is_none(),
        "nothing cached yet"
    );
    let l = layer(work.path());
    cache
        .store(&NewEntry {
            key: &key,
            slot: "Dockerfile:0:1",
            parts: &parts,
            created_by: "RUN make",
            layer: Some(&l),
            created: 1000,
            os: "linux",
            architecture: "amd64",
        })
        .unwrap();
    let hit = cache.lookup(&key, 1500).unwrap().expect("a hit");
    assert_eq!(hit.parts, parts);
    assert_eq!(hit.created_by, "RUN make");
    let cached = hit.layer.expect("the step's layer");
    assert_eq!(
        (cached.digest.as_str(), cached.diff_id.as_str()),
        (l.digest.as_str(), l.diff_id.as_str())
    );
    assert_eq!(
        std::fs::read(&cached.path).unwrap(),
        std::fs::read(&l.path).unwrap()
    );
    assert!(
        cache.lookup(&key, 1000 + 3601).unwrap().is_none(),
        "expired entries miss"
    );

    // A step that changed nothing is cached too, without a layer.
    let mut empty = parts.clone();
    empty.instruction = "RUN /bin/sh -c true".into();
    cache
        .store(&NewEntry {
            key: &empty.key(),
            slot: "Dockerfile:0:1",
            parts: &empty,
            created_by: "RUN true",
            layer: None,
            created: 1000,
            os: "linux",
            architecture: "amd64",
        })
        .unwrap();
    let hit = cache.lookup(&empty.key(), 1001).unwrap().expect("a hit");
    assert!(hit.layer.is_none());
    // The slot's latest entry (any age) explains a miss.
    let latest = cache
        .lookup_slot("Dockerfile:0:1")
        .unwrap()
        .expect("slot entry");
    assert_eq!(latest.parts, empty);
    assert_eq!(
        parts.explain(&latest.parts),
        vec!["instruction changed (was \"RUN /bin/sh -c true\")"]
    );
}
