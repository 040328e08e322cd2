//! The image's file system as metadata: every path with its type, owner,
//! mode and time, and for files where the bytes are (context file, staging
//! file). Content is never loaded; layers stream it when they are written.
//! Each step's changes are tracked so the step's layer holds exactly them.
//! Stacking layers on a tree is in `stack`.

mod packed;
mod stack;

pub use kiln_layer::FileKind;
use kiln_layer::{Content, Entry};
use packed::Nodes;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: FileKind,
    /// Permission and setuid/setgid/sticky bits.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub xattrs: Xattrs,
    /// Files sharing an inode number are hard links of each other.
    pub inode: Inode,
}

/// A file's number in the tree (a build makes far fewer than 2^32).
pub type Inode = u32;

/// A node's extended attributes: nothing allocated (8 bytes) for the
/// files that have none, which is nearly all of them; shared by copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xattrs(Option<std::sync::Arc<BTreeMap<String, Vec<u8>>>>);

impl Xattrs {
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    /// As a map (empty when there are none).
    pub fn to_map(&self) -> BTreeMap<String, Vec<u8>> {
        self.0.as_deref().cloned().unwrap_or_default()
    }

    pub fn same_as(&self, map: &BTreeMap<String, Vec<u8>>) -> bool {
        match &self.0 {
            Some(m) => **m == *map,
            None => map.is_empty(),
        }
    }
}

impl From<BTreeMap<String, Vec<u8>>> for Xattrs {
    fn from(map: BTreeMap<String, Vec<u8>>) -> Xattrs {
        Xattrs((!map.is_empty()).then(|| std::sync::Arc::new(map)))
    }
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, FileKind::Dir)
    }
}

/// Absolute, clean paths ("/", "/a/b") to nodes.
#[derive(Debug, Clone)]
pub struct FsTree {
    nodes: Nodes,
    changed: BTreeSet<String>,
    /// Paths this step removed that existed before it (whiteouts).
    deleted: BTreeSet<String>,
    /// Directories this step replaced: lower contents hidden (opaque).
    opaque: BTreeSet<String>,
    next_inode: Inode,
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{0}: too many levels of symbolic links")]
    SymlinkLoop(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("cannot replace directory {0} with a non-directory")]
    ReplaceDir(String),
}

impl Default for FsTree {
    fn default() -> Self {
        Self::new(0)
    }
}

impl FsTree {
    /// An empty tree: only `/` (mode 0755, root, time `mtime`).
    pub fn new(mtime: i64) -> FsTree {
        let mut nodes = Nodes::new();
        nodes.insert(
            "/".to_string(),
            Node {
                kind: FileKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime,
                xattrs: Default::default(),
                inode: 1,
            },
        );
        FsTree {
            nodes,
            changed: BTreeSet::new(),
            deleted: BTreeSet::new(),
            opaque: BTreeSet::new(),
            next_inode: 2,
        }
    }

    pub fn new_inode(&mut self) -> Inode {
        self.next_inode += 1;
        self.next_inode
    }

    /// The node at `path` (made for the call when it is packed).
    pub fn get(&self, path: &str) -> Option<Cow<'_, Node>> {
        self.nodes.get(path)
    }

    /// Whether `path` is a directory (`None`: not there).
    pub fn is_dir(&self, path: &str) -> Option<bool> {
        self.nodes.is_dir(path)
    }

    /// Every path and node, parents before children.
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, Node>)> {
        self.nodes.range("")
    }

    /// Every path, in order.
    pub fn paths(&self) -> Vec<String> {
        self.iter().map(|(p, _)| p.into_owned()).collect()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().nth(1).is_none()
    }

    /// Direct children names of directory `dir`.
    pub fn children(&self, dir: &str) -> Vec<String> {
        let prefix = dir_prefix(dir);
        self.nodes
            .range(&prefix)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
            })
            .collect()
    }

    /// All paths under `dir` (not `dir` itself), in order.
    pub fn descendants(&self, dir: &str) -> Vec<String> {
        let prefix = dir_prefix(dir);
        self.nodes
            .range(&prefix)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() > prefix.len())
            .map(|(k, _)| k.into_owned())
            .collect()
    }

    /// Resolve every symlink in `path` inside this tree (a link cannot leave
    /// `/`). With `follow_last` false the last component is not followed.
    /// Missing components are kept as they are.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<String, TreeError> {
        let readlink = |p: &str| {
            self.nodes
                .link_target(&format!("/{p}"))
                .map(Cow::into_owned)
        };
        resolve_in_root(path, follow_last, readlink)
            .map(|p| format!("/{p}"))
            .ok_or_else(|| TreeError::SymlinkLoop(path.to_string()))
    }

    /// Insert or replace `path` (resolved, clean); its parent must be a
    /// directory. A directory is only replaced by a directory.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        if self.nodes.is_dir(path) == Some(true) && !node.is_dir() {
            return Err(TreeError::ReplaceDir(path.to_string()));
        }
        let parent = parent_of(path);
        if self.nodes.is_dir(parent) != Some(true) {
            return Err(TreeError::NotADirectory(parent.to_string()));
        }
        self.undelete(path, node.is_dir());
        self.changed.insert(path.to_string());
        self.nodes.insert(path.to_string(), node);
        Ok(())
    }

    /// A path removed earlier in this step is there again: no whiteout; a
    /// directory hides what it had below (opaque).
    fn undelete(&mut self, path: &str, is_dir: bool) {
        if self.deleted.remove(path) && is_dir {
            self.opaque.insert(path.to_string());
        }
    }

    /// Create `path` and missing parents as directories (resolving links),
    /// returning the resolved path. `make` gives a new directory's node.
    pub fn mkdir_all(
        &mut self,
        path: &str,
        make: &mut dyn FnMut(&mut FsTree) -> Node,
    ) -> Result<String, TreeError> {
        let resolved = self.resolve(path, true)?;
        let mut cur = String::new();
        for comp in resolved.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            match self.nodes.is_dir(&cur) {
                Some(true) => {}
                Some(false) => return Err(TreeError::NotADirectory(cur)),
                None => {
                    let node = make(self);
                    self.undelete(&cur, true);
                    self.changed.insert(cur.clone());
                    self.nodes.insert(cur.clone(), node);
                }
            }
        }
        Ok(if resolved.is_empty() {
            "/".into()
        } else {
            resolved
        })
    }

    /// Update a node in place (metadata change), marking it changed.
    pub fn update(&mut self, path: &str, f: impl FnOnce(&mut Node)) {
        if let Some(n) = self.nodes.get(path) {
            let mut n = n.into_owned();
            f(&mut n);
            self.nodes.insert(path.to_string(), n);
            self.changed.insert(path.to_string());
        }
    }

    /// Remove `path` and everything below it.
    pub fn remove(&mut self, path: &str) {
        if path == "/" {
            return;
        }
        for p in self.descendants(path) {
            self.nodes.remove(&p);
            self.changed.remove(&p);
            self.deleted.remove(&p);
            self.opaque.remove(&p);
        }
        if self.nodes.remove(path) {
            self.deleted.insert(path.to_string());
        }
        self.changed.remove(path);
        self.opaque.remove(path);
    }

    /// Hide everything below directory `dir` (an opaque directory).
    pub fn clear_dir(&mut self, dir: &str) {
        for child in self.children(dir) {
            self.remove(&join(dir, &child));
        }
        // The children's whiteouts are implied by the opaque marker.
        let prefix = dir_prefix(dir);
        self.deleted.retain(|p| !p.starts_with(&prefix));
        self.opaque.insert(dir.to_string());
    }

    /// The paths changed and deleted since the last `take_changes`.
    pub fn pending(&self) -> (Vec<String>, Vec<String>) {
        (
            self.changed.iter().cloned().collect(),
            self.deleted.iter().cloned().collect(),
        )
    }

    /// Say where a file's bytes now are (they were moved, not changed).
    pub fn move_content(&mut self, path: &str, to: std::path::PathBuf) {
        let Some(mut node) = self.nodes.get(path).map(Cow::into_owned) else {
            return;
        };
        if let FileKind::File { content, .. } = &mut node.kind {
            *content = Content::Path(to);
            self.nodes.insert(path.to_string(), node);
        }
    }

    /// The changes since the last call, as layer entries: changed paths and
    /// their parent directories, hard links within the layer kept.
    pub fn take_changes(&mut self) -> Vec<Entry> {
        let mut changed = std::mem::take(&mut self.changed);
        let deleted = std::mem::take(&mut self.deleted);
        let opaque = std::mem::take(&mut self.opaque);
        // Whiteouts need their parent directories in the layer too.
        for p in deleted.iter().chain(opaque.iter()) {
            let parent = if opaque.contains(p) {
                p.as_str()
            } else {
                parent_of(p)
            };
            if parent != "/" {
                changed.insert(parent.to_string());
            }
        }
        let mut paths: BTreeSet<String> = BTreeSet::new();
        for p in &changed {
            let mut cur = p.as_str();
            while cur != "/" && paths.insert(cur.to_string()) {
                cur = parent_of(cur);
            }
        }
        let mut ordered: Vec<&String> = paths.iter().collect();
        ordered.sort_by(|a, b| a.split('/').cmp(b.split('/')));
        let mut first_of_inode: HashMap<Inode, String> = HashMap::new();
        let mut entries = Vec::new();
        for p in ordered {
            let Some(node) = self.nodes.get(p.as_str()) else {
                continue;
            };
            let rel = p.trim_start_matches('/').to_string();
            let kind = match &node.kind {
                FileKind::File { .. } => match first_of_inode.get(&node.inode) {
                    Some(first) => FileKind::Hardlink(first.clone()),
                    None => {
                        first_of_inode.insert(node.inode, rel.clone());
                        node.kind.clone()
                    }
                },
                other => other.clone(),
            };
            entries.push(Entry {
                path: rel,
                kind,
                mode: node.mode,
                uid: node.uid,
                gid: node.gid,
                mtime: node.mtime,
                xattrs: node.xattrs.to_map(),
            });
        }
        let marker = |path: String| Entry {
            path,
            kind: FileKind::File {
                content: Content::Bytes(std::sync::Arc::new(Vec::new())),
                size: 0,
            },
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        };
        for p in &deleted {
            let rel = p.trim_start_matches('/');
            let (dir, name) = rel.rsplit_once('/').map_or(("", rel), |(d, n)| (d, n));
            entries.push(marker(if dir.is_empty() {
                format!(".wh.{name}")
            } else {
                format!("{dir}/.wh.{name}")
            }));
        }
        for p in &opaque {
            let rel = p.trim_start_matches('/');
            entries.push(marker(if rel.is_empty() {
                ".wh..wh..opq".into()
            } else {
                format!("{rel}/.wh..wh..opq")
            }));
        }
        entries
    }
}

pub use kiln_layer::apply::resolve_in_root;

/// Parent of a clean absolute path ("/" for "/a" and "/").
pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `dir` with a trailing slash: the key prefix of everything below it.
fn dir_prefix(dir: &str) -> String {
    if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    }
}

/// Last component of a clean path.
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Join a clean absolute dir and a relative path.
pub fn join(dir: &str, rel: &str) -> String {
    if rel.is_empty() {
        dir.to_string()
    } else if dir == "/" {
        format!("/{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tree: &mut FsTree) -> Node {
        Node {
            kind: FileKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Default::default(),
            inode: tree.new_inode(),
        }
    }

    #[test]
    fn resolve_stays_inside_root() {
        let mut t = FsTree::new(0);
        t.mkdir_all("/a/b", &mut dir).unwrap();
        let mut link = dir(&mut t);
        link.kind = FileKind::Symlink("../../../../a".into());
        t.insert("/a/up", link.clone()).unwrap();
        assert_eq!(t.resolve("/a/up/b", true).unwrap(), "/a/b");
        link.kind = FileKind::Symlink("/a/loop".into());
        t.insert("/a/loop", link).unwrap();
        assert!(t.resolve("/a/loop/x", true).is_err());
        assert_eq!(t.resolve("/a/loop", false).unwrap(), "/a/loop");
        assert_eq!(t.children("/a"), vec!["b", "loop", "up"]);
        let changes = t.take_changes();
        let paths: Vec<_> = changes.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["a", "a/b", "a/loop", "a/up"]);
        assert!(t.take_changes().is_empty());
    }
}
