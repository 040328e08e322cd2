//! Opening archives that may be compressed, recognised by their first bytes
//! as docker does for `ADD` (gzip, bzip2, xz; plain tar otherwise).

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveCompression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// The compression named by a stream's magic bytes.
pub fn detect_compression(head: &[u8]) -> ArchiveCompression {
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        ArchiveCompression::Gzip
    } else if head.starts_with(b"BZh") {
        ArchiveCompression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        ArchiveCompression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ArchiveCompression::Zstd
    } else {
        ArchiveCompression::None
    }
}

/// Whether `block` (the first 512 bytes after decompression) is a tar header:
/// its checksum must match, as docker's `IsArchive` checks.
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let stored = &block[148..156];
    let text: String = stored
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(expected) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == expected
}

/// A decompressing reader over `input`, by its magic bytes.
pub fn open_archive<'a, R: Read + Send + 'a>(
    input: R,
) -> io::Result<(ArchiveCompression, Box<dyn Read + Send + 'a>)> {
    let mut buffered = BufReader::with_capacity(64 * 1024, input);
    let head = buffered.fill_buf()?.to_vec();
    let kind = detect_compression(&head);
    let reader: Box<dyn Read + Send + 'a> = match kind {
        ArchiveCompression::None => Box::new(buffered),
        ArchiveCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        ArchiveCompression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(buffered)),
        ArchiveCompression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(buffered)),
        ArchiveCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    Ok((kind, reader))
}

/// A layer's decompressing reader: as [`open_archive`], but gzip's CRC-32
/// is not computed (the caller checks the layer's diff_id, which covers
/// every byte the CRC would).
pub fn open_layer<'a, R: Read + Send + 'a>(
    input: R,
) -> io::Result<(ArchiveCompression, Box<dyn Read + Send + 'a>)> {
    let mut buffered = BufReader::with_capacity(64 * 1024, input);
    let head = buffered.fill_buf()?.to_vec();
    match detect_compression(&head) {
        ArchiveCompression::Gzip => Ok((
            ArchiveCompression::Gzip,
            Box::new(crate::gunzip::GzWithoutCrc::new(buffered)),
        )),
        _ => open_archive(buffered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_magic() {
        assert_eq!(
            detect_compression(&[0x1f, 0x8b, 0x08, 0]),
            ArchiveCompression::Gzip
        );
        assert_eq!(detect_compression(b"BZh91AY"), ArchiveCompression::Bzip2);
        assert_eq!(
            detect_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            ArchiveCompression::Xz
        );
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            ArchiveCompression::Zstd
        );
        assert_eq!(detect_compression(b"hello"), ArchiveCompression::None);
        assert!(!looks_like_tar(&[0u8; 512]));
    }
}
