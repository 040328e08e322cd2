//! Uploading a blob while its file is still being written: a thread sends
//! the file in one streamed `PATCH` (chunked transfer, as docker's pusher
//! does), reading each part as soon as the writer says it is there and
//! waiting when it catches up. When the writer knows the digest,
//! [`FollowedUpload::complete`] asks the registry whether it has that blob
//! already; the body ends only after the answer. A blob the registry has
//! is cancelled (a reproducible layer is not stored twice); else the
//! upload ends with `PUT ?digest=`: the registry checks the digest, so
//! bytes that differ from the file are refused, not stored.
//!
//! The writer never waits for the upload: it only says how far the file
//! is written. Nothing is stored before the caller says so: the `PUT`
//! waits for [`FollowedUpload::finish`] (a build that fails drops the
//! upload instead, and the registry is told to forget it). The upload only
//! saves time: when it fails (the registry refuses streamed uploads, the
//! connection drops, the writer fails), the push uploads the blob from its
//! file as before.

use crate::client::{status_error, Client};
use crate::push::call;
use crate::reference::Reference;
use crate::RegistryError;
use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The writer is still writing.
    Writing,
    /// The file is complete and has this digest.
    Written(String),
    /// The writer stopped without finishing the blob.
    Failed,
    /// The registry has the blob already.
    Cancelled,
}

struct State {
    file: Option<Arc<File>>,
    /// Bytes the file holds so far.
    len: u64,
    end: End,
    /// Whether the registry was asked for the finished blob (the body
    /// ends only then, so a blob it has is never PUT).
    asked: bool,
    /// Whether the blob may be stored (`finish`); a dropped upload is
    /// `Failed` instead.
    store: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }
}

/// What became of a followed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    /// The registry stored the blob with this digest.
    Stored(String),
    /// The registry had it already; the upload was cancelled.
    AlreadyThere(String),
}

/// An upload that follows a file being written. Dropped before
/// [`FollowedUpload::complete`], it is abandoned (the registry forgets it).
pub struct FollowedUpload {
    shared: Arc<Shared>,
    client: Arc<Client>,
    dest: Reference,
    thread: Option<JoinHandle<Result<String, RegistryError>>>,
    /// The digest, once complete, and the question whether the registry
    /// has it.
    check: Option<(String, JoinHandle<bool>)>,
}

/// Start uploading, to `dest`'s repository, a blob whose file is about
/// to be written; tell it of the file with `opened` and `written`.
pub fn follow_upload(client: Arc<Client>, dest: Reference) -> FollowedUpload {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            file: None,
            len: 0,
            end: End::Writing,
            asked: false,
            store: false,
        }),
        changed: Condvar::new(),
    });
    let body = FileFollower {
        shared: shared.clone(),
        at: 0,
    };
    let thread = {
        let (client, dest) = (client.clone(), dest.clone());
        std::thread::spawn(move || upload(&client, &dest, body))
    };
    FollowedUpload {
        shared,
        client,
        dest,
        thread: Some(thread),
        check: None,
    }
}

impl FollowedUpload {
    /// The file, open for reading.
    pub fn opened(&self, file: File) {
        self.shared.set(|s| s.file = Some(Arc::new(file)));
    }

    /// The file now holds `len` bytes.
    pub fn written(&self, len: u64) {
        self.shared.set(|s| s.len = len);
    }

    /// The file is complete and is `digest` (`sha256:<hex>`). The
    /// registry is asked, alongside, whether it has it already.
    pub fn complete(&mut self, digest: &str) {
        self.shared
            .set(|s| s.end = End::Written(digest.to_string()));
        let (client, dest, shared) = (self.client.clone(), self.dest.clone(), self.shared.clone());
        let named = digest.to_string();
        let asking = std::thread::spawn(move || {
            let there = has_blob(&client, &dest, &named);
            shared.set(|s| {
                s.asked = true;
                if there {
                    s.end = End::Cancelled;
                }
            });
            there
        });
        self.check = Some((digest.to_string(), asking));
    }

    /// Store the blob (the build it belongs to succeeded) and wait for
    /// the registry's answer. When it has the blob already, the cancelled
    /// upload is not waited for.
    pub fn finish(mut self) -> Result<Uploaded, RegistryError> {
        self.shared.set(|s| s.store = true);
        if let Some((digest, asking)) = self.check.take() {
            if asking.join().unwrap_or(false) {
                return Ok(Uploaded::AlreadyThere(digest));
            }
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(panicked()))
                .map(Uploaded::Stored),
            None => Err(panicked()),
        }
    }
}

impl Drop for FollowedUpload {
    /// Not finished: the blob is not to be stored.
    fn drop(&mut self) {
        self.shared.set(|s| {
            if !s.store && s.end != End::Cancelled {
                s.end = End::Failed;
            }
        });
    }
}

fn panicked() -> RegistryError {
    RegistryError::Transport {
        what: "a streamed blob upload".into(),
        message: "the upload thread panicked".into(),
    }
}

/// The request body: the file, read as far as it is written.
struct FileFollower {
    shared: Arc<Shared>,
    at: u64,
}

impl Read for FileFollower {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (file, len) = {
            let mut s = self.shared.lock();
            loop {
                match (&s.end, &s.file) {
                    (End::Failed, _) => {
                        return Err(std::io::Error::other("the blob was not finished"))
                    }
                    (End::Cancelled, _) => {
                        return Err(std::io::Error::other("the registry has the blob already"))
                    }
                    (_, Some(f)) if self.at < s.len => break (f.clone(), s.len),
                    (End::Written(_), _) if s.asked => return Ok(0),
                    _ => {}
                }
                s = self
                    .shared
                    .changed
                    .wait(s)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        let want = buf.len().min((len - self.at) as usize);
        let n = file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.at += n as u64;
        Ok(n)
    }
}

fn has_blob(client: &Client, dest: &Reference, digest: &str) -> bool {
    let c = call(dest, None, format!("blob {digest} in {}", dest.name()));
    crate::push::has_blob(client, &c, dest, digest).unwrap_or(false)
}

fn upload(client: &Client, dest: &Reference, body: FileFollower) -> Result<String, RegistryError> {
    let shared = body.shared.clone();
    let what = format!("a layer streamed to {}", dest.name());
    let call = call(dest, None, what.clone());
    let start_path = format!("/v2/{}/blobs/uploads/", dest.repository);
    let started = client.send(&call, &|h, base| {
        h.post(format!("{base}{start_path}"))
            .header(CONTENT_LENGTH, "0")
    })?;
    if started.status() != StatusCode::ACCEPTED {
        return Err(status_error(&what, started));
    }
    let location = crate::push::upload_url(client, dest, &started, &what)?;
    let forget = |location: &str| {
        let _ = client.send(&call, &|h, _| h.delete(location));
    };
    // The body can be sent once: a second request (after an auth
    // challenge) sends nothing, and the digest check at the end refuses it.
    let body = Mutex::new(Some(body));
    let patched = client.send_once(&call, &|h, _| {
        let follower = body.lock().unwrap_or_else(|e| e.into_inner()).take();
        h.patch(&location)
            .timeout(crate::client::UPLOAD_TIMEOUT)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(match follower {
                Some(f) => Body::new(f),
                None => Body::from(Vec::new()),
            })
    });
    let patched = match patched {
        Ok(p) if p.status().is_success() => p,
        Ok(p) => {
            forget(&location);
            return Err(status_error(&what, p));
        }
        Err(e) => {
            forget(&location);
            return Err(e);
        }
    };
    let location = match patched.headers().get(LOCATION) {
        Some(_) => crate::push::upload_url(client, dest, &patched, &what)?,
        None => location,
    };
    // The whole blob is there: it is stored when the caller says so.
    let end = {
        let mut s = shared.lock();
        while !s.store && matches!(s.end, End::Written(_)) {
            s = shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.end.clone()
    };
    let End::Written(digest) = end else {
        forget(&location);
        return Err(RegistryError::Transport {
            what,
            message: "the blob was not finished".into(),
        });
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = format!("{location}{sep}digest={digest}");
    let done = client.send(&call, &|h, _| {
        h.put(&put_url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, "0")
    })?;
    if done.status() != StatusCode::CREATED {
        return Err(status_error(&what, done));
    }
    Ok(digest)
}
