//! Stacking layers on a tree: an extracted layer (base images, cache
//! hits) and another tree laid over this one (`COPY --link`). Neither is
//! recorded as the current step's change.

use super::{base_name, join, parent_of, FileKind, FsTree, Node, TreeError};
use kiln_layer::apply::{AppliedEntry, AppliedKind};
use kiln_layer::Content;
use std::collections::HashMap;
use std::path::Path;

impl FsTree {
    /// Stack a layer extracted under `root` on this tree: whiteouts remove,
    /// opaque directories hide what lower layers had in them, hard links
    /// share the inode of their target. The tree's change set is untouched
    /// (a base image's layers are not a new layer).
    /// `entries` in the layer store's order: opaque directories first.
    pub fn apply_layer(
        &mut self,
        root: &Path,
        entries: impl IntoIterator<Item = AppliedEntry>,
    ) -> Result<(), TreeError> {
        let saved = (
            std::mem::take(&mut self.changed),
            std::mem::take(&mut self.deleted),
            std::mem::take(&mut self.opaque),
        );
        let result = self.apply_entries(root, entries);
        (self.changed, self.deleted, self.opaque) = saved;
        result
    }

    /// Lay `upper`'s paths over this tree as a layer stacks on the ones
    /// below it (`COPY --link`): directories take the upper's metadata and
    /// keep their contents, other paths are replaced. Not recorded as
    /// changes (the layer is written already); returns the paths laid.
    pub fn merge(&mut self, upper: &FsTree) -> Result<Vec<String>, TreeError> {
        let saved = (
            std::mem::take(&mut self.changed),
            std::mem::take(&mut self.deleted),
            std::mem::take(&mut self.opaque),
        );
        let mut inodes: HashMap<super::Inode, super::Inode> = HashMap::new();
        let mut laid = Vec::new();
        let mut result = Ok(());
        for (path, node) in upper.iter().filter(|(p, _)| p != "/") {
            let inode = *inodes.entry(node.inode).or_insert_with(|| self.new_inode());
            let node = Node {
                inode,
                ..node.into_owned()
            };
            let old = self.nodes.dir_and_inode(&path);
            match old {
                Some((true, inode)) if node.is_dir() => {
                    self.nodes.insert(path.to_string(), Node { inode, ..node });
                }
                Some((true, _)) => {
                    self.remove(&path);
                    result = self.insert(&path, node);
                }
                _ => result = self.insert(&path, node),
            }
            if result.is_err() {
                break;
            }
            laid.push(path.into_owned());
        }
        (self.changed, self.deleted, self.opaque) = saved;
        result.map(|()| laid)
    }

    fn apply_entries(
        &mut self,
        root: &Path,
        entries: impl IntoIterator<Item = AppliedEntry>,
    ) -> Result<(), TreeError> {
        // The last parent resolved, as written and as resolved: a layer
        // lists a directory's files one after another, and a regular file
        // changes no resolution, so they share one lookup.
        let mut last_parent: Option<(String, String)> = None;
        for e in entries {
            if e.kind == AppliedKind::Opaque {
                // Opaque directories come first: what is below goes.
                let dir = self.resolve(&format!("/{}", e.path), true)?;
                self.clear_dir(&dir);
                continue;
            }
            let abs = format!("/{}", e.path);
            let parent = match &last_parent {
                Some((raw, resolved)) if raw == parent_of(&abs) => resolved.clone(),
                _ => {
                    let parent = self.resolve(parent_of(&abs), true)?;
                    let now = e.mtime;
                    self.mkdir_all(&parent, &mut |t| Node {
                        kind: FileKind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: now,
                        xattrs: Default::default(),
                        inode: t.new_inode(),
                    })?
                }
            };
            let plain_file = matches!(e.kind, AppliedKind::Node(FileKind::File { .. }));
            last_parent = plain_file.then(|| (parent_of(&abs).to_string(), parent.clone()));
            let path = join(&parent, base_name(&abs));
            let kind = match &e.kind {
                AppliedKind::Opaque => continue,
                AppliedKind::Whiteout => {
                    self.remove(&path);
                    continue;
                }
                AppliedKind::Node(FileKind::Hardlink(target)) => {
                    let t = self.resolve(&format!("/{target}"), false)?;
                    let Some(node) = self.nodes.get(&t).map(|n| n.into_owned()) else {
                        return Err(TreeError::NotADirectory(format!("hard link target {t}")));
                    };
                    if self.nodes.is_dir(&path) == Some(true) {
                        self.remove(&path);
                    }
                    self.nodes.insert(path, node);
                    continue;
                }
                // The record leaves a file's content out: it is in the
                // layer's directory.
                AppliedKind::Node(FileKind::File { size, .. }) => {
                    // One per file of the base: without join's spare
                    // capacity (half of it on a 200k-file base).
                    let mut content = root.join(&e.path);
                    content.shrink_to_fit();
                    FileKind::File {
                        content: Content::Path(content),
                        size: *size,
                    }
                }
                AppliedKind::Node(kind) => kind.clone(),
            };
            let is_dir = matches!(kind, FileKind::Dir);
            let old = self.nodes.dir_and_inode(&path);
            let inode = match old {
                // A directory over a directory updates its metadata only.
                Some((true, inode)) if is_dir => inode,
                Some((true, _)) => {
                    self.remove(&path);
                    self.new_inode()
                }
                _ => self.new_inode(),
            };
            self.nodes.insert(
                path,
                Node {
                    kind,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    mtime: e.mtime,
                    xattrs: e.xattrs.clone().into(),
                    inode,
                },
            );
        }
        Ok(())
    }
}
