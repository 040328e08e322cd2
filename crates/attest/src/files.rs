//! The image's files as the scanners see them: every path with its kind,
//! and a way to open a regular file. The engine gives its file tree (the
//! bytes stay where the layers put them); tests give a directory.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { size: u64 },
    Dir,
    Symlink(String),
    Other,
}

/// A readable, seekable file.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// An image's merged file system, read-only.
pub trait ImageFiles: Sync {
    /// Calls `visit` with every path ("/a/b"), its kind and its mode bits.
    fn walk(&self, visit: &mut dyn FnMut(&str, &Kind, u32));
    /// What `path` is (no symlink followed), if it exists.
    fn kind(&self, path: &str) -> Option<Kind>;
    /// Opens the regular file at `path` (no symlink followed).
    fn open(&self, path: &str) -> std::io::Result<Box<dyn ReadSeek + '_>>;
}

/// Reads at most `limit` bytes of a file; a database larger than that is
/// refused rather than read whole.
pub fn read_limited(files: &dyn ImageFiles, path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    files.open(path)?.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "{path} is larger than {limit} bytes"
        )));
    }
    Ok(out)
}

/// `path` with symlinks in it followed inside the image (never outside
/// its root), or `None` when it leads nowhere.
pub fn resolve(files: &dyn ImageFiles, path: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path.split('/').rev().map(String::from).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        parts.push(c);
        let here = format!("/{}", parts.join("/"));
        if let Kind::Symlink(target) = files.kind(&here)? {
            hops += 1;
            if hops > 40 {
                return None;
            }
            parts.pop();
            if target.starts_with('/') {
                parts.clear();
            }
            todo.extend(target.split('/').rev().map(String::from));
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// The folder holding `path` ("/" for top-level paths).
pub fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

/// A directory on disk as an image's files (tests, `--sbom` over a
/// context).
pub struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    pub fn new(root: impl Into<PathBuf>) -> DirFiles {
        DirFiles { root: root.into() }
    }

    fn host(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

fn kind_of(md: &std::fs::Metadata, path: &Path) -> Kind {
    let t = md.file_type();
    if t.is_file() {
        Kind::File { size: md.len() }
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        let target = std::fs::read_link(path).unwrap_or_default();
        Kind::Symlink(target.to_string_lossy().into_owned())
    } else {
        Kind::Other
    }
}

impl ImageFiles for DirFiles {
    fn walk(&self, visit: &mut dyn FnMut(&str, &Kind, u32)) {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                let Ok(rel) = p.strip_prefix(&self.root) else {
                    continue;
                };
                let kind = kind_of(&md, &p);
                visit(
                    &format!("/{}", rel.to_string_lossy()),
                    &kind,
                    md.permissions().mode() & 0o7777,
                );
                if kind == Kind::Dir {
                    stack.push(p);
                }
            }
        }
    }

    fn kind(&self, path: &str) -> Option<Kind> {
        let p = self.host(path);
        std::fs::symlink_metadata(&p)
            .ok()
            .map(|md| kind_of(&md, &p))
    }

    fn open(&self, path: &str) -> std::io::Result<Box<dyn ReadSeek + '_>> {
        match self.kind(path) {
            Some(Kind::File { .. }) => Ok(Box::new(std::fs::File::open(self.host(path))?)),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{path} is not a regular file"),
            )),
        }
    }
}
