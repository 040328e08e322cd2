//! Writing a layer: entries sorted, tar headers built exactly (ustar, PAX
//! where ustar cannot say it), compressed, and hashed twice in one pass:
//! the uncompressed stream gives the diff_id, the compressed one the digest.

use crate::entry::{Content, Entry};
use crate::file::FileKind;
use crate::hashing::HashingWriter;
use crate::pgzip::ParallelGzEncoder;
use crate::LayerError;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar (media type `...layer.v1.tar`).
    None,
    /// gzip at the given level (0-9), block-parallel.
    Gzip(u32),
    /// zstd at the given level (1-19), with worker threads.
    Zstd(i32),
}

impl Compression {
    /// The OCI media type of a layer written this way.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip(_) => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd(_) => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Clamp every mtime to at most this (SOURCE_DATE_EPOCH / --reproducible).
    pub clamp_mtime: Option<i64>,
    /// Compression threads (0: the machine's parallelism). The bytes
    /// written do not depend on it.
    pub threads: usize,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip(3),
            clamp_mtime: None,
            threads: 0,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Hex sha256 of the blob as stored (compressed).
    pub digest: String,
    /// Hex sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub uncompressed_size: u64,
    pub compression: Compression,
    /// The blob file: `<dir>/<digest hex>`.
    pub path: PathBuf,
}

/// Write `entries` as a layer blob into `dir`, named by its digest.
pub fn write_layer(
    entries: Vec<Entry>,
    dir: &Path,
    options: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    write_layer_followed(entries, dir, options, None)
}

/// Something that reads the blob's file while it is written (an upload
/// running alongside). It is told, never waited for.
pub trait BlobFollower {
    /// The file as created, open for reading.
    fn opened(&mut self, file: File);
    /// The file holds `len` bytes now.
    fn written(&mut self, len: u64);
}

/// [`write_layer`], telling `follower` how far the blob's file is written.
pub fn write_layer_followed(
    mut entries: Vec<Entry>,
    dir: &Path,
    options: &LayerOptions,
    follower: Option<&mut dyn BlobFollower>,
) -> Result<LayerInfo, LayerError> {
    entries.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let tmp = tempfile_in(dir)?;
    let result = write_blob(&entries, &tmp, dir, options, follower);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_blob(
    entries: &[Entry],
    tmp: &Path,
    dir: &Path,
    options: &LayerOptions,
    mut follower: Option<&mut dyn BlobFollower>,
) -> Result<LayerInfo, LayerError> {
    let file =
        File::create(tmp).map_err(|e| LayerError::io(format!("creating {}", tmp.display()), e))?;
    if let Some(f) = follower.as_mut() {
        let reading =
            File::open(tmp).map_err(|e| LayerError::io(format!("opening {}", tmp.display()), e))?;
        f.opened(reading);
    }
    let file = FollowedFile {
        file,
        len: 0,
        follower,
    };
    let blob = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let compressing = |e| LayerError::io("compressing layer", e);
    let (blob, diff_id, size) = match options.compression {
        Compression::None => tar_through(entries, blob, options, Ok)?,
        Compression::Gzip(level) => {
            let gz = ParallelGzEncoder::new(blob, level, options.threads).map_err(compressing)?;
            tar_through(entries, gz, options, ParallelGzEncoder::finish)?
        }
        Compression::Zstd(level) => {
            let zs = zstd_encoder(blob, level, options.threads).map_err(compressing)?;
            tar_through(entries, zs, options, zstd::Encoder::finish)?
        }
    };
    finish_blob(blob, diff_id, size, options.compression, tmp, dir)
}

type Blob<'f> = HashingWriter<BufWriter<FollowedFile<'f>>>;

/// The blob's file, telling its follower how far it is written.
struct FollowedFile<'f> {
    file: File,
    len: u64,
    follower: Option<&'f mut dyn BlobFollower>,
}

impl Write for FollowedFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.len += n as u64;
        if let Some(f) = self.follower.as_mut() {
            f.written(self.len);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes the tar through `encoder` (hashing the tar on the way in), then
/// ends the encoder; returns the blob writer, the diff_id and the tar's size.
fn tar_through<'f, E: Write>(
    entries: &[Entry],
    encoder: E,
    options: &LayerOptions,
    end: impl FnOnce(E) -> std::io::Result<Blob<'f>>,
) -> Result<(Blob<'f>, String, u64), LayerError> {
    let tar_hash = write_tar(entries, HashingWriter::new(encoder), options)?;
    let (encoder, diff_id, size) = tar_hash.finish();
    let blob = end(encoder).map_err(|e| LayerError::io("compressing layer", e))?;
    Ok((blob, diff_id, size))
}

/// zstd with worker threads: with one worker or more its output does not
/// depend on how many (zstd's multi-threaded mode cuts jobs by size).
fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    threads: usize,
) -> std::io::Result<zstd::Encoder<'static, W>> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut enc = zstd::Encoder::new(out, level)?;
    enc.multithread(threads as u32)?;
    enc.include_checksum(false)?;
    Ok(enc)
}

fn finish_blob(
    blob: Blob<'_>,
    diff_id: String,
    uncompressed_size: u64,
    compression: Compression,
    tmp: &Path,
    dir: &Path,
) -> Result<LayerInfo, LayerError> {
    let (mut out, digest, size) = blob.finish();
    out.flush()
        .map_err(|e| LayerError::io("writing layer", e))?;
    let path = dir.join(&digest);
    std::fs::rename(tmp, &path)
        .map_err(|e| LayerError::io(format!("renaming layer to {}", path.display()), e))?;
    Ok(LayerInfo {
        digest,
        diff_id,
        size,
        uncompressed_size,
        compression,
        path,
    })
}

fn tempfile_in(dir: &Path) -> Result<PathBuf, LayerError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LayerError::io(format!("creating {}", dir.display()), e))?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(dir.join(format!(".tmp-layer-{}-{n}", std::process::id())))
}

fn write_tar<W: Write>(entries: &[Entry], out: W, options: &LayerOptions) -> Result<W, LayerError> {
    let mut builder = tar::Builder::new(out);
    for entry in entries {
        append_entry(&mut builder, entry, options)?;
    }
    builder
        .into_inner()
        .map_err(|e| LayerError::io("finishing tar", e))
}

/// ustar fields are octal of fixed width; beyond them a PAX record is used.
const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &Entry,
    options: &LayerOptions,
) -> Result<(), LayerError> {
    let invalid = |m: &str| LayerError::InvalidEntry {
        path: entry.path.clone(),
        message: m.to_string(),
    };
    if entry.path.is_empty()
        || entry.path.starts_with('/')
        || entry.path.split('/').any(|c| c == ".." || c.is_empty())
    {
        return Err(invalid("path must be relative and normal"));
    }
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut header = tar::Header::new_ustar();
    let name = match entry.kind {
        FileKind::Dir => format!("{}/", entry.path),
        _ => entry.path.clone(),
    };
    if header.set_path(&name).is_err() || name.len() > 255 {
        pax.push(("path".into(), name.clone().into_bytes()));
        // A readable stand-in for tools that ignore PAX.
        let short: String = name
            .chars()
            .rev()
            .take(90)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        header
            .set_path(short.trim_start_matches('/'))
            .map_err(|e| invalid(&format!("path: {e}")))?;
    }
    let mtime = match options.clamp_mtime {
        Some(c) => entry.mtime.min(c),
        None => entry.mtime,
    };
    if mtime < 0 || mtime as u64 > USTAR_MAX_SIZE {
        pax.push(("mtime".into(), mtime.to_string().into_bytes()));
        header.set_mtime(0);
    } else {
        header.set_mtime(mtime as u64);
    }
    header.set_mode(entry.mode & 0o7777);
    for (key, id, set) in [
        (
            "uid",
            entry.uid,
            tar::Header::set_uid as fn(&mut tar::Header, u64),
        ),
        ("gid", entry.gid, tar::Header::set_gid),
    ] {
        if id > USTAR_MAX_ID {
            pax.push((key.into(), id.to_string().into_bytes()));
            set(&mut header, 0);
        } else {
            set(&mut header, id);
        }
    }
    let mut link: Option<&str> = None;
    let mut size = 0u64;
    match &entry.kind {
        FileKind::Dir => header.set_entry_type(tar::EntryType::Directory),
        FileKind::File { size: s, .. } => {
            header.set_entry_type(tar::EntryType::Regular);
            size = *s;
        }
        FileKind::Symlink(t) => {
            header.set_entry_type(tar::EntryType::Symlink);
            link = Some(t);
        }
        FileKind::Hardlink(t) => {
            header.set_entry_type(tar::EntryType::Link);
            link = Some(t);
        }
        FileKind::Fifo => header.set_entry_type(tar::EntryType::Fifo),
        FileKind::CharDevice { major, minor } | FileKind::BlockDevice { major, minor } => {
            header.set_entry_type(if matches!(entry.kind, FileKind::CharDevice { .. }) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            header
                .set_device_major(*major)
                .map_err(|e| invalid(&e.to_string()))?;
            header
                .set_device_minor(*minor)
                .map_err(|e| invalid(&e.to_string()))?;
        }
    }
    if let Some(target) = link {
        if target.len() > 100 || header.set_link_name(target).is_err() {
            pax.push(("linkpath".into(), target.as_bytes().to_vec()));
            header
                .set_link_name("")
                .map_err(|e| invalid(&e.to_string()))?;
        }
    }
    if size > USTAR_MAX_SIZE {
        pax.push(("size".into(), size.to_string().into_bytes()));
        header.set_size(0);
    } else {
        header.set_size(size);
    }
    for (k, v) in &entry.xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        pax.sort_by(|a, b| a.0.cmp(&b.0));
        builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| LayerError::io(format!("writing PAX header for {}", entry.path), e))?;
    }
    header.set_cksum();
    match &entry.kind {
        FileKind::File { content, size } => {
            let reader: Box<dyn Read> = match content {
                Content::Path(p) => Box::new(
                    File::open(p)
                        .map_err(|e| LayerError::io(format!("reading {}", p.display()), e))?,
                ),
                Content::Bytes(b) => Box::new(io::Cursor::new(b.clone().to_vec())),
            };
            // Exactly `size` bytes: a file that changed since it was listed is an error,
            // not a corrupt archive.
            let mut limited = reader.take(*size);
            let mut counting = CountingReader {
                inner: &mut limited,
                count: 0,
            };
            builder
                .append(&header, &mut counting)
                .map_err(|e| LayerError::io(format!("writing {}", entry.path), e))?;
            if counting.count != *size {
                return Err(invalid("file changed size while the layer was written"));
            }
        }
        _ => builder
            .append(&header, io::empty())
            .map_err(|e| LayerError::io(format!("writing {}", entry.path), e))?,
    }
    Ok(())
}

struct CountingReader<'a, R> {
    inner: &'a mut R,
    count: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
