//! A minimal HTTP/1.0 file server on a free loopback port, for tests that
//! fetch over HTTP (git's dumb protocol serves a bare repository so).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

pub struct StaticHttp {
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl StaticHttp {
    /// Serve the files under `root` until the process ends.
    pub fn start(root: PathBuf) -> StaticHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().expect("local address").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        return;
                    }
                    // The headers are not needed; read them off.
                    let mut line = String::new();
                    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                        line.clear();
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/");
                    let path = path.split('?').next().unwrap_or("/");
                    let safe = !path.split('/').any(|c| c == "..");
                    let file = root.join(path.trim_start_matches('/'));
                    let mut out = &stream;
                    match std::fs::read(&file) {
                        Ok(body) if safe && file.is_file() => {
                            let _ = write!(
                                out,
                                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            let _ = out.write_all(&body);
                        }
                        _ => {
                            let _ = out
                                .write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                        }
                    }
                });
            }
        });
        StaticHttp { addr }
    }
}
