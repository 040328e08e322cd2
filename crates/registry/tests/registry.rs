//! The registry client against a real distribution registry.

use kiln_test_support as support;

use kiln_image::BuiltImage;
use kiln_registry::{
    pull, push, BlobStore, Client, Credential, Reference, RegistryError, RegistryOptions,
    WantedPlatform,
};
use support::{Options, TestRegistry};

mod common;
use common::{image, insecure, platform};

#[test]
fn push_pull_skip_existing_and_mount() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "hello");
    let client = Client::new(insecure(&reg));
    let dest = Reference::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let first = push(&client, &dest, &img).unwrap();
    assert_eq!((first.uploaded, first.existing, first.mounted), (2, 0, 0));
    let uploads = reg.requests("PUT", "/blobs/uploads/");
    assert_eq!(uploads, 2);

    // Again: nothing is uploaded.
    let again = push(&client, &dest, &img).unwrap();
    assert_eq!((again.uploaded, again.existing), (0, 2));
    assert_eq!(reg.requests("PUT", "/blobs/uploads/"), uploads);

    // Pull it back: digests verified, files in the store.
    let store = BlobStore::new(work.path().join("store"));
    let pulled = pull(&client, &store, &dest, &platform()).unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_eq!(pulled.layers[0].digest, img.layers[0].digest);
    assert_eq!(
        std::fs::read(&pulled.layers[0].path).unwrap(),
        std::fs::read(&img.layers[0].path).unwrap()
    );

    // To another repository, naming where the layer came from: mounted.
    let mut derived = img.clone();
    derived.layers[0].source = Some(dest.name());
    let other = Reference::parse(&format!("{}/other/app:v1", reg.addr)).unwrap();
    let report = push(&client, &other, &derived).unwrap();
    assert_eq!(report.mounted, 1, "{report:?}");
    assert_eq!(reg.requests("POST", "mount="), 1);
    let back = pull(
        &client,
        &BlobStore::new(work.path().join("store2")),
        &other,
        &platform(),
    )
    .unwrap();
    assert_eq!(back.manifest_digest, img.manifest_digest);
}

#[test]
fn corrupted_blob_is_rejected_and_discarded() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "precious");
    let client = Client::new(insecure(&reg));
    let dest = Reference::parse(&format!("{}/c/app:v1", reg.addr)).unwrap();
    push(&client, &dest, &img).unwrap();
    let data = reg.blob_data(&img.layers[0].digest);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let store = BlobStore::new(work.path().join("store"));
    let err = pull(&client, &store, &dest, &platform()).unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&img.layers[0].digest), "{err}");
    assert!(
        !store.contains(&img.layers[0].digest),
        "a bad blob never stays in the store"
    );
}

#[test]
fn htpasswd_right_and_wrong_password() {
    let reg = TestRegistry::start(Options {
        htpasswd: Some(("kiln".into(), "s3cret-pass".into())),
        tls: true,
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "auth");
    let dest = Reference::parse(&format!("{}/auth/app:v1", reg.addr)).unwrap();
    let with = |password: &str| {
        Client::new(RegistryOptions {
            certificates: vec![(reg.addr.clone(), reg.ca.clone().unwrap())],
            credentials: vec![(
                reg.addr.clone(),
                Credential::Basic {
                    username: "kiln".into(),
                    password: password.into(),
                },
            )],
            ..Default::default()
        })
    };
    push(&with("s3cret-pass"), &dest, &img).unwrap();
    let err = push(&with("wrong"), &dest, &img).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(
        msg.contains(&reg.addr) && msg.contains("wrong username or password"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong\"") && !msg.contains("s3cret"),
        "no secret in errors: {msg}"
    );
    // No credentials at all: a clear message too.
    let anonymous = Client::new(RegistryOptions {
        certificates: vec![(reg.addr.clone(), reg.ca.clone().unwrap())],
        ..Default::default()
    });
    let store = BlobStore::new(work.path().join("s"));
    let err = pull(&anonymous, &store, &dest, &platform())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&reg.addr) && err.contains("credentials"),
        "{err}"
    );
}

#[test]
fn tls_with_private_ca_or_skip_verify() {
    let reg = TestRegistry::start(Options {
        htpasswd: None,
        tls: true,
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "tls");
    let dest = Reference::parse(&format!("{}/tls/app:v1", reg.addr)).unwrap();
    // Untrusted CA: refused.
    let plain = Client::new(RegistryOptions::default());
    let err = push(&plain, &dest, &img).unwrap_err().to_string();
    assert!(
        err.contains("certificate") || err.contains("cannot connect"),
        "{err}"
    );
    // Trusted through --registry-certificate.
    let with_ca = Client::new(RegistryOptions {
        certificates: vec![(reg.addr.clone(), reg.ca.clone().unwrap())],
        ..Default::default()
    });
    push(&with_ca, &dest, &img).unwrap();
    // Or not verified at all.
    let skip = Client::new(RegistryOptions {
        skip_tls_verify_registries: vec![reg.addr.clone()],
        ..Default::default()
    });
    let pulled = pull(
        &skip,
        &BlobStore::new(work.path().join("s")),
        &dest,
        &platform(),
    )
    .unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
}

#[test]
fn registry_map_falls_back_to_the_original() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "mirror");
    let client = Client::new(insecure(&reg));
    let dest = Reference::parse(&format!("{}/m/app:v1", reg.addr)).unwrap();
    push(&client, &dest, &img).unwrap();
    // A map to a mirror that does not answer: kiln falls back to the original.
    let mut opts = insecure(&reg);
    opts.registry_maps = vec![(reg.addr.clone(), vec!["127.0.0.1:9".into()])];
    opts.insecure_registries.push("127.0.0.1:9".into());
    let mapped = Client::new(opts.clone());
    let pulled = pull(
        &mapped,
        &BlobStore::new(work.path().join("s")),
        &dest,
        &platform(),
    )
    .unwrap();
    assert_eq!(pulled.source.registry, reg.addr);
    // Without fallback the dead mirror is the answer.
    opts.skip_default_registry_fallback = true;
    let strict = Client::new(opts);
    assert!(pull(
        &strict,
        &BlobStore::new(work.path().join("t")),
        &dest,
        &platform()
    )
    .is_err());
    // A mirror that has the image is used (the registry maps onto itself under a path).
    let mut via = insecure(&reg);
    let mirrored = Reference::parse(&format!("{}/mirror/m/app:v1", reg.addr)).unwrap();
    push(&client, &mirrored, &img).unwrap();
    via.registry_maps = vec![(reg.addr.clone(), vec![format!("{}/mirror", reg.addr)])];
    via.skip_default_registry_fallback = true;
    let pulled = pull(
        &Client::new(via),
        &BlobStore::new(work.path().join("u")),
        &dest,
        &platform(),
    )
    .unwrap();
    assert_eq!(pulled.source.repository, "mirror/m/app");
}

/// An image index with two platforms: the wanted one is chosen.
#[test]
fn index_platform_selection() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let client = Client::new(insecure(&reg));
    let mut images = Vec::new();
    for (arch, variant, text) in [("amd64", None, "x86"), ("arm64", Some("v8"), "arm")] {
        let mut img = image(work.path(), text);
        img.config.architecture = arch.into();
        img.config.variant = variant.map(String::from);
        let img = BuiltImage::new(img.config.clone(), img.layers.clone()).unwrap();
        let r = Reference::parse(&format!("{}/multi/app:{arch}", reg.addr)).unwrap();
        push(&client, &r, &img).unwrap();
        images.push((arch, variant, img));
    }
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|(arch, variant, img)| {
            let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                platform["variant"] = serde_json::json!(v);
            }
            serde_json::json!({
                "mediaType": kiln_image::manifest::MEDIA_TYPE_MANIFEST,
                "digest": img.manifest_digest,
                "size": img.manifest_bytes.len(),
                "platform": platform,
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": kiln_image::manifest::MEDIA_TYPE_INDEX,
        "manifests": manifests,
    });
    let resp = reqwest::blocking::Client::new()
        .put(format!("http://{}/v2/multi/app/manifests/all", reg.addr))
        .header("Content-Type", kiln_image::manifest::MEDIA_TYPE_INDEX)
        .body(serde_json::to_vec(&index).unwrap())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let all = Reference::parse(&format!("{}/multi/app:all", reg.addr)).unwrap();
    let store = BlobStore::new(work.path().join("s"));
    let arm = pull(
        &client,
        &store,
        &all,
        &WantedPlatform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        },
    )
    .unwrap();
    assert_eq!(arm.manifest_digest, images[1].2.manifest_digest);
    assert_eq!(arm.config.architecture, "arm64");
    let amd = pull(&client, &store, &all, &platform()).unwrap();
    assert_eq!(amd.manifest_digest, images[0].2.manifest_digest);
    let err = pull(
        &client,
        &store,
        &all,
        &WantedPlatform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("linux/s390x"), "{err}");
}

/// A token service for the bearer flow: it checks Basic credentials and
/// the requested scope, and records each request line.
fn token_service(
    user: &'static str,
    password: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use base64::Engine;
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut auth = String::new();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if lower.starts_with("authorization: ") {
                    auth = h["authorization: ".len()..].trim().to_string();
                }
                if let Some(v) = lower.strip_prefix("content-length: ") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            seen2.lock().unwrap().push(format!("{line} {body}"));
            let mut conn = conn;
            // GET with Basic credentials, or POST of an OAuth2 refresh token
            // (an identity token from config.json).
            let ok = if line.starts_with("POST") {
                body.contains("grant_type=refresh_token")
                    && body.contains("refresh_token=identity-abc")
                    && body.contains("service=kiln-test")
                    && body.contains("scope=repository%3A")
            } else {
                auth == expected
                    && line.contains("service=kiln-test")
                    && line.contains("scope=repository%3A")
            };
            let reply = if ok {
                let body = if line.starts_with("POST") {
                    r#"{"access_token":"issued-token"}"#
                } else {
                    r#"{"token":"issued-token"}"#
                };
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (addr, seen)
}

#[test]
fn bearer_token_flow() {
    let (token_addr, seen) = token_service("tokuser", "tokpass");
    let reg = TestRegistry::start(Options {
        bearer_realm: Some(format!("http://{token_addr}/token")),
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let img = image(work.path(), "bearer");
    let dest = Reference::parse(&format!("{}/tok/app:v1", reg.addr)).unwrap();
    let client = |password: &str| {
        let mut o = insecure(&reg);
        o.credentials = vec![(
            reg.addr.clone(),
            Credential::Basic {
                username: "tokuser".into(),
                password: password.into(),
            },
        )];
        Client::new(o)
    };
    push(&client("tokpass"), &dest, &img).unwrap();
    let pulled = pull(
        &client("tokpass"),
        &BlobStore::new(work.path().join("s")),
        &dest,
        &platform(),
    )
    .unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("pull%2Cpush")),
        "push asked for a push scope: {lines:?}"
    );
    // An identity token is exchanged by POST for an access token.
    let mut o = insecure(&reg);
    o.credentials = vec![(
        reg.addr.clone(),
        Credential::IdentityToken("identity-abc".into()),
    )];
    let pulled = pull(
        &Client::new(o),
        &BlobStore::new(work.path().join("t")),
        &dest,
        &platform(),
    )
    .unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert!(seen.lock().unwrap().iter().any(|l| l.starts_with("POST")));
    // Wrong password: the token service refuses; one clear error.
    let err = push(&client("nope"), &dest, &img).unwrap_err().to_string();
    assert!(
        err.contains(&reg.addr) && err.contains("wrong username or password"),
        "{err}"
    );
}
