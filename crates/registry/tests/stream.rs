//! Uploading a blob while its file is written, against a real registry:
//! the upload follows the writer, the digest is checked at the end, an
//! unfinished blob is forgotten, and a blob the registry has is not sent.

use kiln_test_support as support;

use kiln_registry::stream::{follow_upload, Uploaded};
use kiln_registry::{Client, Reference, RegistryOptions};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;
use support::{Options, TestRegistry};

fn blob_status(reg: &TestRegistry, repo: &str, digest: &str) -> u16 {
    reqwest::blocking::Client::new()
        .head(format!("http://{}/v2/{repo}/blobs/{digest}", reg.addr))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn blob_bytes(reg: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("http://{}/v2/{repo}/blobs/{digest}", reg.addr);
    reqwest::blocking::get(url)
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec()
}

/// 3 MiB that do not repeat, and their digest.
fn data() -> (Vec<u8>, String) {
    let bytes = support::incompressible(3 << 20);
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    (bytes, digest)
}

/// Writes `bytes` to a new file in three parts, telling `upload` as a
/// layer writer does, with pauses so that the upload catches up and waits.
fn write_followed(
    dir: &std::path::Path,
    bytes: &[u8],
    upload: &kiln_registry::stream::FollowedUpload,
) {
    let path = dir.join("blob");
    let mut file = std::fs::File::create(&path).unwrap();
    upload.opened(std::fs::File::open(&path).unwrap());
    let mut len = 0;
    for part in bytes.chunks(bytes.len() / 3 + 1) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        file.write_all(part).unwrap();
        len += part.len() as u64;
        upload.written(len);
    }
}

fn start(reg: &TestRegistry, repo: &str) -> kiln_registry::stream::FollowedUpload {
    let client = Arc::new(Client::new(RegistryOptions {
        insecure_registries: vec![reg.addr.clone()],
        ..Default::default()
    }));
    let dest = Reference::parse(&format!("{}/{repo}:v1", reg.addr)).unwrap();
    follow_upload(client, dest)
}

#[test]
fn a_blob_uploads_while_its_file_is_written() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let (bytes, digest) = data();
    let mut upload = start(&reg, "follow/ok");
    write_followed(work.path(), &bytes, &upload);
    upload.complete(&digest);
    assert_eq!(upload.finish().unwrap(), Uploaded::Stored(digest.clone()));
    assert_eq!(blob_bytes(&reg, "follow/ok", &digest), bytes);
    // One streamed PATCH carried it.
    assert_eq!(reg.requests("PATCH", "/v2/follow/ok/blobs/uploads/"), 1);
}

#[test]
fn a_wrong_digest_stores_nothing() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let (bytes, digest) = data();
    let wrong = format!("sha256:{:x}", Sha256::digest(b"something else"));
    let mut upload = start(&reg, "follow/wrong");
    write_followed(work.path(), &bytes, &upload);
    upload.complete(&wrong);
    let err = upload.finish().unwrap_err();
    assert!(err.to_string().contains("follow/wrong"), "{err}");
    assert_eq!(blob_status(&reg, "follow/wrong", &wrong), 404);
    assert_eq!(blob_status(&reg, "follow/wrong", &digest), 404);
}

/// The registry is told to forget an upload of `repo`: waits for the DELETE.
fn forgotten(reg: &TestRegistry, repo: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reg.requests("DELETE", &format!("/v2/{repo}/blobs/uploads/")) == 0 {
        assert!(std::time::Instant::now() < deadline, "no DELETE");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn an_unfinished_blob_is_forgotten() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let (bytes, digest) = data();
    let upload = start(&reg, "follow/cut");
    write_followed(work.path(), &bytes[..bytes.len() / 2], &upload);
    // The writer fails: it drops the upload without a digest.
    drop(upload);
    forgotten(&reg, "follow/cut");
    assert_eq!(blob_status(&reg, "follow/cut", &digest), 404);
}

#[test]
fn a_blob_is_stored_only_when_finished() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let (bytes, digest) = data();
    let mut upload = start(&reg, "follow/held");
    write_followed(work.path(), &bytes, &upload);
    upload.complete(&digest);
    // Written whole, but the build it belongs to failed: dropped, never
    // finished, so nothing is stored and the upload is forgotten.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(blob_status(&reg, "follow/held", &digest), 404);
    drop(upload);
    forgotten(&reg, "follow/held");
    assert_eq!(blob_status(&reg, "follow/held", &digest), 404);
    assert_eq!(reg.requests("PUT", "/v2/follow/held/"), 0);
}

#[test]
fn a_blob_the_registry_has_is_not_uploaded_again() {
    let reg = TestRegistry::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let (bytes, digest) = data();
    let mut first = start(&reg, "follow/again");
    write_followed(work.path(), &bytes, &first);
    first.complete(&digest);
    first.finish().unwrap();
    let puts = reg.requests("PUT", "/v2/follow/again/blobs/uploads/");

    // The same blob again: the registry says it has it, and the upload
    // ends without its PUT (it is forgotten instead).
    let again = tempfile::tempdir().unwrap();
    let mut second = start(&reg, "follow/again");
    write_followed(again.path(), &bytes, &second);
    second.complete(&digest);
    assert_eq!(second.finish().unwrap(), Uploaded::AlreadyThere(digest));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reg.requests("DELETE", "/v2/follow/again/blobs/uploads/") == 0 {
        assert!(std::time::Instant::now() < deadline, "no DELETE");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(reg.requests("PUT", "/v2/follow/again/blobs/uploads/"), puts);
}
