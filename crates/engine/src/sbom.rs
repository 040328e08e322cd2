//! What the SBOM scanners read: a stage's file tree as `ImageFiles` (the
//! bytes stay where the layers put them). The sources provenance names
//! are gathered where they are resolved: images where they are pulled
//! (`engine.rs`), URLs and git commits where they are fetched
//! (`remote.rs`).

use crate::fstree::{FileKind, FsTree};
use kiln_attest::files::{Kind, ReadSeek};
use kiln_attest::{ImageFiles, Inventory};
use kiln_layer::Content;

/// A stage's file tree as the scanners read it.
pub(crate) struct TreeFiles<'a>(pub &'a FsTree);

fn kind(k: &FileKind) -> Kind {
    match k {
        FileKind::File { size, .. } => Kind::File { size: *size },
        FileKind::Dir => Kind::Dir,
        FileKind::Symlink(t) => Kind::Symlink(t.clone()),
        _ => Kind::Other,
    }
}

impl ImageFiles for TreeFiles<'_> {
    fn walk(&self, visit: &mut dyn FnMut(&str, &Kind, u32)) {
        for (path, node) in self.0.iter() {
            visit(&path, &kind(&node.kind), node.mode);
        }
    }

    fn kind(&self, path: &str) -> Option<Kind> {
        self.0.get(path).map(|n| kind(&n.kind))
    }

    fn open(&self, path: &str) -> std::io::Result<Box<dyn ReadSeek + '_>> {
        let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string());
        let node = self.0.get(path).ok_or_else(missing)?;
        match &node.kind {
            FileKind::File {
                content: Content::Path(p),
                ..
            } => Ok(Box::new(std::fs::File::open(p)?)),
            FileKind::File {
                content: Content::Bytes(b),
                ..
            } => Ok(Box::new(std::io::Cursor::new(b.as_ref().clone()))),
            _ => Err(missing()),
        }
    }
}

/// An SBOM of one part of the build: the target's image (`""`), another
/// stage (its name), or the context (`"context"`).
#[derive(Debug, Clone)]
pub struct Scanned {
    pub name: String,
    pub inventory: Inventory,
}

pub(crate) fn scan_tree(name: &str, tree: &FsTree) -> Scanned {
    let started = std::time::Instant::now();
    let inventory = kiln_attest::scan(&TreeFiles(tree));
    tracing::info!(
        "sbom: {} packages found in {} in {:.3}s",
        inventory.packages.len(),
        if name.is_empty() { "the image" } else { name },
        started.elapsed().as_secs_f64()
    );
    Scanned {
        name: name.to_string(),
        inventory,
    }
}
