//! The registry client against faults a proxy injects in front of a real
//! registry: resets, truncated and corrupted bodies, 5xx and 429 answers,
//! stalls, uploads cut off.

use kiln_test_support as support;

use kiln_registry::{pull, push, BlobStore, Client, Reference, RegistryOptions};
use support::{Options, TestRegistry};

mod common;
use common::{image, insecure, platform};

#[test]
fn transient_failures_are_retried_then_reported() {
    use support::{Fault, FaultProxy};
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "flaky");
    let direct = Client::new(insecure(&reg));
    let dest = Reference::parse(&format!("{}/flaky/app:v1", reg.addr)).unwrap();
    push(&direct, &dest, &img).unwrap();
    for (i, fault) in [
        Fault::Status503,
        Fault::Status500,
        Fault::TooManyRequests,
        Fault::DropConnection,
        Fault::ResetMidBody,
        Fault::TruncatedBody,
    ]
    .into_iter()
    .enumerate()
    {
        let proxy = FaultProxy::start(&reg.addr, "/blobs/sha256:", fault, 2);
        let via = Reference::parse(&format!("{}/flaky/app:v1", proxy.addr)).unwrap();
        let opts = |retries| RegistryOptions {
            insecure_registries: vec![proxy.addr.clone()],
            pull_retries: retries,
            ..Default::default()
        };
        // Two faults, two retries: the pull succeeds.
        let store = BlobStore::new(work.path().join(format!("ok{i}")));
        let pulled = pull(&Client::new(opts(2)), &store, &via, &platform())
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(pulled.manifest_digest, img.manifest_digest);
        assert_eq!(
            proxy
                .faults_served
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        // Faults beyond the budget: a clear error, nothing half-stored.
        let proxy = FaultProxy::start(&reg.addr, "/blobs/sha256:", fault, 100);
        let (client, via) = through(&proxy, "flaky/app:v1");
        let store = BlobStore::new(work.path().join(format!("bad{i}")));
        let err = pull(&client, &store, &via, &platform())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blob") && err.contains(&proxy.addr),
            "{fault:?}: {err}"
        );
        assert!(!store.contains(&img.config_digest));
    }
}

/// A client of the registry behind `proxy` with one retry, and `image`
/// there.
fn through(proxy: &support::FaultProxy, image: &str) -> (Client, Reference) {
    let client = Client::new(RegistryOptions {
        insecure_registries: vec![proxy.addr.clone()],
        pull_retries: 1,
        ..Default::default()
    });
    let via = Reference::parse(&format!("{}/{image}", proxy.addr)).unwrap();
    (client, via)
}

/// A blob whose bytes arrive changed is never stored or used.
#[test]
fn corrupted_blobs_are_refused_and_never_stored() {
    use support::{Fault, FaultProxy};
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "corrupt");
    push(
        &Client::new(insecure(&reg)),
        &Reference::parse(&format!("{}/c/app:v1", reg.addr)).unwrap(),
        &img,
    )
    .unwrap();
    let proxy = FaultProxy::start(&reg.addr, "/blobs/sha256:", Fault::CorruptedBody, 100);
    let (client, via) = through(&proxy, "c/app:v1");
    let store = BlobStore::new(work.path().join("s"));
    let err = pull(&client, &store, &via, &platform())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sha256:"), "{err}");
    assert!(!store.contains(&img.config_digest));
    let layer = &img.layers[0].digest;
    assert!(!store.contains(layer));
    assert_eq!(
        std::fs::read_dir(work.path().join("s"))
            .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
            .unwrap_or(0),
        0,
        "no partial file is left"
    );
}

/// A registry that accepts the connection and then says nothing: a
/// timeout (retried, then an error), not a hang.
#[test]
fn a_registry_that_stops_answering_times_out() {
    use support::{Fault, FaultProxy};
    let reg = TestRegistry::start(Options::default());
    let proxy = FaultProxy::start(&reg.addr, "/manifests/", Fault::Stall, 100);
    let via = Reference::parse(&format!("{}/stall/app:v1", proxy.addr)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let client = Client::new(RegistryOptions {
        insecure_registries: vec![proxy.addr.clone()],
        pull_retries: 1,
        timeout: Some(std::time::Duration::from_secs(1)),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let err = pull(&client, &BlobStore::new(work.path()), &via, &platform())
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{err}"
    );
    assert!(
        err.contains("timed out") && err.contains(&proxy.addr),
        "{err}"
    );
}

/// An upload cut off (or refused with a 500) is retried; past the budget
/// the push fails and no manifest is pushed.
#[test]
fn uploads_cut_off_are_retried_and_a_manifest_needs_all_its_blobs() {
    use support::{Fault, FaultProxy};
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    for (i, fault) in [Fault::ResetMidUpload, Fault::Status500]
        .into_iter()
        .enumerate()
    {
        let img = image(work.path(), &format!("upload {i}"));
        let options = |proxy: &FaultProxy, retries| RegistryOptions {
            insecure_registries: vec![proxy.addr.clone()],
            push_retries: retries,
            ..Default::default()
        };
        let proxy = FaultProxy::start(&reg.addr, "PUT /v2/up/ok", fault, 2);
        let dest = Reference::parse(&format!("{}/up/ok{i}:v1", proxy.addr)).unwrap();
        push(&Client::new(options(&proxy, 3)), &dest, &img)
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(
            proxy
                .faults_served
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        let direct = Reference::parse(&format!("{}/up/ok{i}:v1", reg.addr)).unwrap();
        pull(
            &Client::new(insecure(&reg)),
            &BlobStore::new(work.path().join(format!("ok{i}"))),
            &direct,
            &platform(),
        )
        .unwrap_or_else(|e| panic!("{fault:?}: the pushed image: {e}"));

        let proxy = FaultProxy::start(&reg.addr, "PUT /v2/up/bad", fault, 100);
        let dest = Reference::parse(&format!("{}/up/bad{i}:v1", proxy.addr)).unwrap();
        let err = push(&Client::new(options(&proxy, 1)), &dest, &img)
            .unwrap_err()
            .to_string();
        assert!(err.contains("blob"), "{fault:?}: {err}");
        assert_eq!(
            reg.requests("PUT", &format!("/v2/up/bad{i}/manifests/")),
            0,
            "{fault:?}: a manifest was pushed without its blobs"
        );
    }
}
