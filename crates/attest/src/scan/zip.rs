//! Just enough of the zip format to read a few small entries of a Java
//! archive: the central directory, then stored or deflated entries.

use std::io::{Read, SeekFrom};

/// An entry's name and where its local header starts.
pub struct ZipEntry {
    pub name: String,
    method: u16,
    compressed: u64,
    size: u64,
    local_header: u64,
}

/// Entries larger than this are not read (a pom.properties is tiny).
const MAX_ENTRY: u64 = 1 << 20;

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// The archive's entries, from its central directory.
pub fn entries(f: &mut dyn super::super::files::ReadSeek) -> std::io::Result<Vec<ZipEntry>> {
    let len = f.seek(SeekFrom::End(0))?;
    let tail_len = len.min(65_557);
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0; tail_len as usize];
    f.read_exact(&mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| bad("no end of central directory"))?;
    let count = u16_at(&tail, eocd + 10).ok_or_else(|| bad("short end record"))?;
    let cd_size = u32_at(&tail, eocd + 12).ok_or_else(|| bad("short end record"))? as u64;
    let cd_offset = u32_at(&tail, eocd + 16).ok_or_else(|| bad("short end record"))? as u64;
    if cd_offset.saturating_add(cd_size) > len || cd_size > 64 << 20 {
        return Err(bad("central directory outside the file"));
    }
    f.seek(SeekFrom::Start(cd_offset))?;
    let mut cd = vec![0; cd_size as usize];
    f.read_exact(&mut cd)?;
    let mut out = Vec::new();
    let mut i = 0;
    for _ in 0..count {
        if u32_at(&cd, i) != Some(0x0201_4b50) {
            return Err(bad("broken central directory"));
        }
        let field = |o: usize| u32_at(&cd, i + o).ok_or_else(|| bad("short entry"));
        let short = |o: usize| u16_at(&cd, i + o).ok_or_else(|| bad("short entry"));
        let method = short(10)?;
        let compressed = field(20)? as u64;
        let size = field(24)? as u64;
        let (name_len, extra_len, comment_len) = (
            short(28)? as usize,
            short(30)? as usize,
            short(32)? as usize,
        );
        let local_header = field(42)? as u64;
        let name = cd
            .get(i + 46..i + 46 + name_len)
            .ok_or_else(|| bad("short entry name"))?;
        out.push(ZipEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            method,
            compressed,
            size,
            local_header,
        });
        i += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// One entry's bytes (stored or deflated, at most 1 MiB).
pub fn read_entry(
    f: &mut dyn super::super::files::ReadSeek,
    e: &ZipEntry,
) -> std::io::Result<Vec<u8>> {
    if e.size > MAX_ENTRY || e.compressed > MAX_ENTRY {
        return Err(bad("entry too large"));
    }
    f.seek(SeekFrom::Start(e.local_header))?;
    let mut head = [0u8; 30];
    f.read_exact(&mut head)?;
    if u32_at(&head, 0) != Some(0x0403_4b50) {
        return Err(bad("broken local header"));
    }
    let skip = u16_at(&head, 26).unwrap_or(0) as i64 + u16_at(&head, 28).unwrap_or(0) as i64;
    f.seek(SeekFrom::Current(skip))?;
    let mut raw = vec![0; e.compressed as usize];
    f.read_exact(&mut raw)?;
    match e.method {
        0 => Ok(raw),
        8 => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(&raw[..])
                .take(MAX_ENTRY)
                .read_to_end(&mut out)?;
            Ok(out)
        }
        m => Err(bad(&format!("compression method {m}"))),
    }
}
