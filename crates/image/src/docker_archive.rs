//! docker-archive (`docker save` format): `manifest.json`, the config as
//! `<hex>.json`, and each layer uncompressed as `<diff_id hex>/layer.tar`
//! (the caller's `open_tar` decompresses while the layer streams in).

use crate::layout::hex_of;
use crate::manifest::{BuiltImage, LayerBlob};
use crate::ImageError;
use serde_json::json;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// Opens a layer blob as its uncompressed tar stream.
pub type OpenTar<'a> = &'a dyn Fn(&LayerBlob) -> std::io::Result<Box<dyn Read>>;

pub fn write_docker_archive(
    path: &Path,
    image: &BuiltImage,
    repo_tags: &[String],
    open_tar: OpenTar,
) -> Result<(), ImageError> {
    let tmp = path.with_extension("kiln-tmp");
    let result = write_to(&tmp, image, repo_tags, open_tar).and_then(|_| {
        std::fs::rename(&tmp, path)
            .map_err(|e| ImageError::io(format!("writing {}", path.display()), e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_to(
    path: &Path,
    image: &BuiltImage,
    repo_tags: &[String],
    open_tar: OpenTar,
) -> Result<(), ImageError> {
    let file = File::create(path)
        .map_err(|e| ImageError::io(format!("creating {}", path.display()), e))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let io = |e| ImageError::io(format!("writing {}", path.display()), e);

    let config_name = format!("{}.json", hex_of(&image.config_digest));
    append_bytes(&mut tar, &config_name, &image.config_bytes).map_err(io)?;
    let mut written = BTreeSet::new();
    let mut layer_names = Vec::new();
    for layer in &image.layers {
        let dir = hex_of(&layer.diff_id).to_string();
        let name = format!("{dir}/layer.tar");
        if written.insert(dir.clone()) {
            let mut header = dir_header(&format!("{dir}/"));
            tar.append(&header, std::io::empty()).map_err(io)?;
            let reading = |e| ImageError::io(format!("reading {}", layer.path.display()), e);
            // 0: not known (a layer no step extracted): count it first.
            let size = match layer.uncompressed_size {
                0 => std::io::copy(&mut open_tar(layer).map_err(reading)?, &mut std::io::sink())
                    .map_err(reading)?,
                n => n,
            };
            let reader = open_tar(layer).map_err(reading)?;
            header = file_header(&name, size);
            tar.append(&header, reader.take(size)).map_err(io)?;
        }
        layer_names.push(name);
    }
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| ImageError::invalid("manifest.json", e.to_string()))?;
    append_bytes(&mut tar, "manifest.json", &bytes).map_err(io)?;
    let mut out = tar.into_inner().map_err(io)?;
    out.flush().map_err(io)?;
    Ok(())
}

fn file_header(name: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let _ = h.set_path(name);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn dir_header(name: &str) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let _ = h.set_path(name);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let header = file_header(name, bytes.len() as u64);
    tar.append(&header, bytes)
}
