//! What a layer's tar entries say, read without writing anything: each
//! entry's path, header and extended attributes (shared with extraction,
//! which then writes it), and a whole layer's records
//! ([`describe_layer_to`]), which a tree can hold before the layer is
//! extracted.

use crate::apply::{clean_entry_path, AppliedEntry, AppliedKind, EntryProblem, Extracted};
use crate::archive::open_archive;
use crate::entry::Content;
use crate::file::FileKind;
use crate::hashing::HashingReader;
use crate::LayerError;
use std::collections::BTreeMap;
use std::io::Read;

/// The name a whiteout entry (`.wh.NAME`) hides; `None` for any other
/// entry. `.`, `..` and an empty name are refused: they would name the
/// directory itself or its parent (extraction would replace the folder
/// above the layer's root with the whiteout's device).
pub(crate) fn whiteout_of(name: &str) -> Option<Result<&str, EntryProblem>> {
    let hidden = name.strip_prefix(".wh.")?;
    Some(match hidden {
        "" | "." | ".." => Err(EntryProblem::Whiteout(hidden.to_string())),
        h => Ok(h),
    })
}

/// What a tar entry says of itself, before anything is written.
pub(crate) struct EntryMeta {
    pub(crate) raw: String,
    /// Clean, relative.
    pub(crate) rel: String,
    pub(crate) parent_rel: String,
    pub(crate) name: String,
    pub(crate) header: tar::Header,
    /// The entry's record, its kind still to be set.
    pub(crate) record: AppliedEntry,
}

/// Reads an entry's path, header and xattrs; `None` for the root itself.
pub(crate) fn entry_meta<R: Read>(
    entry: &mut tar::Entry<R>,
    what: &str,
) -> Result<Option<EntryMeta>, LayerError> {
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let rel = match clean_entry_path(&raw) {
        Ok(Some(rel)) => rel,
        Ok(None) => return Ok(None),
        Err(m) => {
            return Err(LayerError::InvalidEntry {
                path: format!("{what}: {raw}"),
                message: m.to_string(),
            })
        }
    };
    let header = entry.header().clone();
    let mut xattrs = BTreeMap::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
            }
        }
    }
    let (parent_rel, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p.to_string(), n.to_string()),
        None => (String::new(), rel.clone()),
    };
    let record = AppliedEntry {
        path: rel.clone(),
        kind: AppliedKind::Opaque,
        mode: header.mode().unwrap_or(0o644) & 0o7777,
        uid: header.uid().unwrap_or(0),
        gid: header.gid().unwrap_or(0),
        mtime: header.mtime().unwrap_or(0) as i64,
        xattrs,
    };
    Ok(Some(EntryMeta {
        raw,
        rel,
        parent_rel,
        name,
        header,
        record,
    }))
}

/// The records [`extract_layer_to`] would hand `sink`, from the tar alone:
/// nothing is written (each file's content stays where the blob is; its
/// owner extracts the layer when the bytes are wanted). Checks the same
/// paths and returns the diff_id and size; `overlay_ready` is false.
pub fn describe_layer_to(
    input: impl Read + Send,
    what: &str,
    sink: &mut dyn FnMut(AppliedEntry) -> std::io::Result<()>,
) -> Result<Extracted, LayerError> {
    let recorded = |e: std::io::Error| LayerError::io(format!("recording {what}"), e);
    let reading = |e: std::io::Error| LayerError::io(format!("reading {what}"), e);
    let (_, reader) = open_archive(input).map_err(reading)?;
    let mut archive = tar::Archive::new(HashingReader::new(reader));
    for entry in archive.entries().map_err(reading)? {
        let mut entry = entry.map_err(reading)?;
        let Some(m) = entry_meta(&mut entry, what)? else {
            continue;
        };
        let invalid = |message: String| LayerError::InvalidEntry {
            path: format!("{what}: {}", m.raw),
            message,
        };
        let record = |kind: AppliedKind, path: String| AppliedEntry {
            path,
            kind,
            ..m.record.clone()
        };
        if m.name == ".wh..wh..opq" {
            sink(record(AppliedKind::Opaque, m.parent_rel.clone())).map_err(recorded)?;
            continue;
        }
        if let Some(hidden) = whiteout_of(&m.name) {
            let hidden = hidden.map_err(|m| invalid(m.to_string()))?;
            let path = match m.parent_rel.as_str() {
                "" => hidden.to_string(),
                p => format!("{p}/{hidden}"),
            };
            sink(record(AppliedKind::Whiteout, path)).map_err(recorded)?;
            continue;
        }
        let et = m.header.entry_type();
        let kind = match et {
            tar::EntryType::Directory => FileKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                FileKind::File {
                    content: Content::default(),
                    size: m.header.size().map_err(reading)?,
                }
            }
            tar::EntryType::Symlink => FileKind::Symlink(link_name(&entry)),
            tar::EntryType::Link => {
                let target_raw = link_name(&entry);
                let target = clean_entry_path(&target_raw)
                    .map_err(|e| invalid(format!("hard link to {target_raw:?}: {e}")))?
                    .ok_or_else(|| invalid("hard link to the root".into()))?;
                FileKind::Hardlink(target)
            }
            tar::EntryType::Fifo => FileKind::Fifo,
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = m.header.device_major().ok().flatten().unwrap_or(0);
                let minor = m.header.device_minor().ok().flatten().unwrap_or(0);
                if et == tar::EntryType::Char {
                    FileKind::CharDevice { major, minor }
                } else {
                    FileKind::BlockDevice { major, minor }
                }
            }
            _ => continue,
        };
        sink(record(AppliedKind::Node(kind), m.rel.clone())).map_err(recorded)?;
    }
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(reading)?;
    let (diff_id, uncompressed_size) = rest.finish();
    Ok(Extracted {
        entries: Vec::new(),
        diff_id,
        uncompressed_size,
        overlay_ready: false,
    })
}

pub(crate) fn link_name<R: Read>(entry: &tar::Entry<R>) -> String {
    entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
