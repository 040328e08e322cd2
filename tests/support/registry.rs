//! A real CNCF distribution registry (Debian's `docker-registry`) on a free
//! loopback port with its own storage: anonymous, htpasswd, and/or TLS with
//! a CA generated for the test. Its access log counts requests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRegistry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    /// The CA that signed the TLS certificate (PEM), when TLS is on.
    pub ca: Option<PathBuf>,
    child: Child,
}

#[derive(Default)]
pub struct Options {
    pub htpasswd: Option<(String, String)>,
    pub tls: bool,
    /// Bearer challenges pointing at this token realm (the registry's
    /// `silly` access controller: it demands a token, any token).
    pub bearer_realm: Option<String>,
}

fn need(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is not installed: the registry tests need it (the README's test command installs it)"
    );
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generate_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    need("openssl");
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kiln test CA",
        ])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-out")
        .arg(&cert)
        .arg("-extfile")
        .arg(&ext));
    (ca, cert, key)
}

impl TestRegistry {
    pub fn start(options: Options) -> TestRegistry {
        need("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let mut ca = None;
        if options.tls {
            let (ca_pem, cert, key) = generate_tls(dir.path());
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca = Some(ca_pem);
        }
        if let Some((user, password)) = &options.htpasswd {
            need("htpasswd");
            let file = dir.path().join("htpasswd");
            run(Command::new("htpasswd")
                .args(["-Bbc"])
                .arg(&file)
                .arg(user)
                .arg(password));
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                file.display()
            ));
        }
        if let Some(realm) = &options.bearer_realm {
            config.push_str(&format!(
                "auth:\n  silly:\n    realm: {realm}\n    service: kiln-test\n"
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("registry.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting docker-registry");
        let registry = TestRegistry {
            addr,
            dir,
            log,
            ca,
            child,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not start on {}:\n{}",
            self.addr,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Access-log lines with this method whose path contains `needle`.
    pub fn requests(&self, method: &str, needle: &str) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(&format!("\"{method} ")) && l.contains(needle))
            .count()
    }

    /// Where the registry stores a blob's bytes (to corrupt it in a test).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fault-injecting proxy in front of a registry: the first `count`
/// requests whose request line contains `needle` get `fault`; everything
/// else is forwarded, one request per connection.
pub struct FaultProxy {
    pub addr: String,
    pub faults_served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answered `503 Service Unavailable`.
    Status503,
    /// Answered `500 Internal Server Error`.
    Status500,
    /// Answered `429 Too Many Requests` with `Retry-After: 1`.
    TooManyRequests,
    /// The connection closed before any answer.
    DropConnection,
    /// The request is read and never answered (the connection stays open).
    Stall,
    /// The answer's head and half its body, then the connection reset.
    ResetMidBody,
    /// The answer's head and half its body, then the connection closed.
    TruncatedBody,
    /// The whole answer with one byte of its body changed.
    CorruptedBody,
    /// Half the request's body read, then the connection reset (an
    /// upload cut off).
    ResetMidUpload,
    /// `400 MANIFEST_INVALID` for an OCI image index (by its Content-Type;
    /// other requests pass), as a registry without index support answers.
    IndexRefused,
}

impl FaultProxy {
    pub fn start(upstream: &str, needle: &str, fault: Fault, count: usize) -> FaultProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let served = Arc::new(AtomicUsize::new(0));
        let served2 = served.clone();
        let upstream = upstream.to_string();
        let needle = needle.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let upstream = upstream.clone();
                let needle = needle.clone();
                let served = served2.clone();
                std::thread::spawn(move || {
                    proxy_one(client, &upstream, &|line: &str| {
                        let take = |n: usize| (n < count).then_some(n + 1);
                        (line.contains(&needle)
                            && served
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
                                .is_ok())
                        .then_some(fault)
                    })
                });
            }
        });
        FaultProxy {
            addr,
            faults_served: served,
        }
    }
}

/// One request on `client`: read its head, decide the fault, forward.
fn proxy_one(
    mut client: std::net::TcpStream,
    upstream: &str,
    fault_for: &dyn Fn(&str) -> Option<Fault>,
) {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or("").to_string();
    let mut fault = fault_for(&line);
    // Only an index is refused: an image manifest goes through.
    let index = text
        .to_ascii_lowercase()
        .contains("content-type: application/vnd.oci.image.index");
    if matches!(fault, Some(Fault::IndexRefused)) && !index {
        fault = None;
    }
    let reply: Option<&[u8]> = match fault {
        Some(Fault::Status503) => Some(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(Fault::Status500) => Some(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(Fault::TooManyRequests) => Some(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(Fault::DropConnection) => Some(b""),
        Some(Fault::IndexRefused) => Some(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 108\r\nConnection: close\r\n\r\n{\"errors\":[{\"code\":\"MANIFEST_INVALID\",\"message\":\"manifest invalid\",\"detail\":\"unsupported: an image index\"}]}"),
        _ => None,
    };
    if let Some(reply) = reply {
        let _ = client.write_all(reply);
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    }
    if let Some(Fault::Stall) = fault {
        // Hold the connection, answer nothing.
        std::thread::sleep(Duration::from_secs(300));
        return;
    }
    let body_len: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let chunked = text.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if let Some(Fault::ResetMidUpload) = fault {
        let mut half = vec![0u8; body_len / 2];
        let _ = client.read_exact(&mut half);
        if chunked {
            // Some of a streamed body: its first chunk's size line.
            let _ = read_line(&mut client);
        }
        reset(&client);
        return;
    }
    let Ok(mut server) = std::net::TcpStream::connect(upstream) else {
        return;
    };
    // One request per connection, so every request passes the check.
    head.truncate(head.len() - 2);
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    if server.write_all(&head).is_err() {
        return;
    }
    let body = match chunked {
        true => read_chunked(&mut client),
        false => {
            let mut body = vec![0u8; body_len];
            client.read_exact(&mut body).ok().map(|_| body)
        }
    };
    if body.is_none_or(|b| server.write_all(&b).is_err()) {
        return;
    }
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    let body_len = answer.len() - split;
    match fault {
        Some(Fault::ResetMidBody) | Some(Fault::TruncatedBody) => {
            let _ = client.write_all(&answer[..split + body_len / 2]);
            let _ = client.flush();
            if let Some(Fault::ResetMidBody) = fault {
                reset(&client);
                return;
            }
        }
        Some(Fault::CorruptedBody) if body_len > 0 => {
            answer[split + body_len / 2] ^= 0xff;
            let _ = client.write_all(&answer);
        }
        _ => {
            let _ = client.write_all(&answer);
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// One line, its CRLF included.
fn read_line(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).ok()?;
        line.push(byte[0]);
    }
    Some(line)
}

/// A chunked request body as sent (its framing kept, to be forwarded).
fn read_chunked(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut raw = Vec::new();
    loop {
        let line = read_line(stream)?;
        let text = String::from_utf8_lossy(&line);
        let size = usize::from_str_radix(text.trim().split(';').next()?.trim(), 16).ok()?;
        raw.extend_from_slice(&line);
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let trailer = read_line(stream)?;
                raw.extend_from_slice(&trailer);
                if trailer == b"\r\n" {
                    return Some(raw);
                }
            }
        }
        let mut data = vec![0u8; size + 2];
        stream.read_exact(&mut data).ok()?;
        raw.extend_from_slice(&data);
    }
}

/// Closes `stream` with a reset (SO_LINGER 0), not an orderly close.
fn reset(stream: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(std::net::Shutdown::Read);
}
