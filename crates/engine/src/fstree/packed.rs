//! The tree's nodes, most of them packed. A 200,000-file base image made
//! a `BTreeMap<String, Node>` of ~340 bytes a file (half-full B-tree
//! leaves, each key and each file's content path on the heap). Here the
//! nodes live in a sorted array of fixed 48-byte records with their
//! paths in one text buffer (~65 bytes a file); a file's content path is
//! not stored but derived, the layer directory it was extracted to joined
//! with its own path. Recent changes sit in a small map on top (`over`),
//! packed into the array when it grows, so a layer being applied never
//! holds more than a few thousand nodes unpacked.

use super::{FileKind, Node, Xattrs};
use kiln_layer::Content;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Changes kept unpacked before they are packed (~5 MB of map).
const UNPACKED_MAX: usize = 16_384;

#[derive(Debug, Clone)]
pub(super) struct Nodes {
    packed: Arc<Packed>,
    /// Newer than `packed`: a node, or `None` where a packed one was
    /// removed.
    over: BTreeMap<String, Option<Node>>,
    /// Pack when `over` reaches this (nodes that cannot be packed stay).
    pack_at: usize,
}

#[derive(Debug, Clone, Default)]
struct Packed {
    /// Sorted by path (byte order, as `String`'s).
    recs: Vec<Rec>,
    /// Paths and symlink targets.
    text: String,
    /// The layer directories files' contents are under.
    roots: Vec<Arc<Path>>,
    /// Extended attributes of the few nodes that have any; 0 is none.
    xattrs: Vec<Xattrs>,
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    path: (u32, u32),
    /// A file's size, a symlink target's place in `text`, a device's
    /// numbers.
    extra: u64,
    mtime: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    inode: u32,
    xattrs: u32,
    root: u16,
    kind: Kind,
    /// Replaced or removed: set and dropped within one packing.
    dead: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Char,
    Block,
}

impl Packed {
    fn path(&self, r: &Rec) -> &str {
        &self.text[r.path.0 as usize..(r.path.0 + r.path.1) as usize]
    }

    fn find(&self, path: &str) -> Option<&Rec> {
        let i = self
            .recs
            .binary_search_by(|r| self.path(r).cmp(path))
            .ok()?;
        Some(&self.recs[i])
    }

    /// Index of the first record at or after `from`.
    fn lower_bound(&self, from: &str) -> usize {
        self.recs.partition_point(|r| self.path(r) < from)
    }

    fn node(&self, r: &Rec) -> Node {
        let span = |v: u64| (v >> 32) as usize..((v >> 32) + (v & 0xffff_ffff)) as usize;
        let kind = match r.kind {
            Kind::Dir => FileKind::Dir,
            Kind::File => {
                let rel = self.path(r).trim_start_matches('/');
                FileKind::File {
                    content: Content::Path(self.roots[r.root as usize].join(rel)),
                    size: r.extra,
                }
            }
            Kind::Symlink => FileKind::Symlink(self.text[span(r.extra)].to_string()),
            Kind::Fifo => FileKind::Fifo,
            Kind::Char => FileKind::CharDevice {
                major: (r.extra >> 32) as u32,
                minor: r.extra as u32,
            },
            Kind::Block => FileKind::BlockDevice {
                major: (r.extra >> 32) as u32,
                minor: r.extra as u32,
            },
        };
        Node {
            kind,
            mode: r.mode,
            uid: u64::from(r.uid),
            gid: u64::from(r.gid),
            mtime: r.mtime,
            xattrs: self
                .xattrs
                .get(r.xattrs as usize)
                .cloned()
                .unwrap_or_default(),
            inode: r.inode,
        }
    }

    fn push_text(&mut self, s: &str) -> Option<(u32, u32)> {
        let at = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(s.len()).ok()?;
        at.checked_add(len)?;
        self.text.push_str(s);
        Some((at, len))
    }

    /// `node` at `path` as a record, or `None` when it cannot be packed
    /// (its content is not its own path under a layer directory, IDs
    /// beyond 32 bits, hard links).
    fn pack(&mut self, path: &str, node: &Node) -> Option<Rec> {
        let (kind, extra, root) = match &node.kind {
            FileKind::Dir => (Kind::Dir, 0, 0),
            FileKind::File {
                content: Content::Path(p),
                size,
            } => (Kind::File, *size, self.root_of(p, path)?),
            FileKind::File { .. } | FileKind::Hardlink(_) => return None,
            FileKind::Symlink(_) => (Kind::Symlink, 0, 0),
            FileKind::Fifo => (Kind::Fifo, 0, 0),
            FileKind::CharDevice { major, minor } => {
                (Kind::Char, u64::from(*major) << 32 | u64::from(*minor), 0)
            }
            FileKind::BlockDevice { major, minor } => {
                (Kind::Block, u64::from(*major) << 32 | u64::from(*minor), 0)
            }
        };
        let uid = u32::try_from(node.uid).ok()?;
        let gid = u32::try_from(node.gid).ok()?;
        let extra = match &node.kind {
            FileKind::Symlink(t) => {
                let (at, len) = self.push_text(t)?;
                u64::from(at) << 32 | u64::from(len)
            }
            _ => extra,
        };
        let xattrs = if node.xattrs.iter().next().is_some() {
            self.xattrs.push(node.xattrs.clone());
            u32::try_from(self.xattrs.len() - 1).ok()?
        } else {
            0
        };
        Some(Rec {
            path: self.push_text(path)?,
            extra,
            mtime: node.mtime,
            mode: node.mode,
            uid,
            gid,
            inode: node.inode,
            xattrs,
            root,
            kind,
            dead: false,
        })
    }

    /// The layer directory `content` is `path` under, remembered.
    fn root_of(&mut self, content: &Path, path: &str) -> Option<u16> {
        let bytes = content.as_os_str().as_bytes();
        let root = bytes.strip_suffix(path.as_bytes())?;
        if root.is_empty() || path == "/" {
            return None;
        }
        let root = Path::new(std::ffi::OsStr::from_bytes(root));
        if let Some(i) = self.roots.iter().rposition(|r| **r == *root) {
            return u16::try_from(i).ok();
        }
        let i = u16::try_from(self.roots.len()).ok()?;
        self.roots.push(Arc::from(root));
        Some(i)
    }
}

impl Nodes {
    pub(super) fn new() -> Nodes {
        Nodes {
            packed: Arc::default(),
            over: BTreeMap::new(),
            pack_at: UNPACKED_MAX,
        }
    }

    pub(super) fn get(&self, path: &str) -> Option<Cow<'_, Node>> {
        match self.over.get(path) {
            Some(Some(n)) => Some(Cow::Borrowed(n)),
            Some(None) => None,
            None => self
                .packed
                .find(path)
                .map(|r| Cow::Owned(self.packed.node(r))),
        }
    }

    /// Whether `path` is a directory (`None`: not there).
    pub(super) fn is_dir(&self, path: &str) -> Option<bool> {
        match self.over.get(path) {
            Some(n) => n.as_ref().map(Node::is_dir),
            None => self.packed.find(path).map(|r| r.kind == Kind::Dir),
        }
    }

    /// Whether `path` is a directory, and its inode number, without
    /// making its node (a packed file's content path is built on demand).
    pub(super) fn dir_and_inode(&self, path: &str) -> Option<(bool, super::Inode)> {
        match self.over.get(path) {
            Some(n) => n.as_ref().map(|n| (n.is_dir(), n.inode)),
            None => self
                .packed
                .find(path)
                .map(|r| (r.kind == Kind::Dir, r.inode)),
        }
    }

    /// A symlink's target (`None` for anything else).
    pub(super) fn link_target(&self, path: &str) -> Option<Cow<'_, str>> {
        match self.over.get(path) {
            Some(Some(Node {
                kind: FileKind::Symlink(t),
                ..
            })) => Some(Cow::Borrowed(t)),
            Some(_) => None,
            None => {
                let r = self.packed.find(path).filter(|r| r.kind == Kind::Symlink)?;
                let (at, len) = ((r.extra >> 32) as usize, (r.extra & 0xffff_ffff) as usize);
                Some(Cow::Borrowed(&self.packed.text[at..at + len]))
            }
        }
    }

    pub(super) fn insert(&mut self, path: String, node: Node) {
        self.over.insert(path, Some(node));
        if self.over.len() >= self.pack_at {
            self.pack();
        }
    }

    /// Remove `path`; whether it was there.
    pub(super) fn remove(&mut self, path: &str) -> bool {
        let packed = self.packed.find(path).is_some();
        let was = match self.over.remove(path) {
            Some(n) => n.is_some(),
            None => packed,
        };
        if packed {
            self.over.insert(path.to_string(), None);
        }
        was
    }

    /// Every path and node from `from` on, in order, while `keep` says.
    pub(super) fn range<'a>(
        &'a self,
        from: &str,
    ) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, Node>)> + 'a {
        let mut over = self
            .over
            .range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            .peekable();
        let p = &*self.packed;
        let mut packed = p.recs[p.lower_bound(from)..].iter().peekable();
        std::iter::from_fn(move || loop {
            let take_over = match (over.peek(), packed.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((k, _)), Some(r)) => {
                    let order = k.as_str().cmp(p.path(r));
                    if order == std::cmp::Ordering::Equal {
                        packed.next();
                    }
                    order != std::cmp::Ordering::Greater
                }
            };
            if take_over {
                let (k, n) = over.next()?;
                if let Some(n) = n {
                    return Some((Cow::Borrowed(k.as_str()), Cow::Borrowed(n)));
                }
            } else {
                let r = packed.next()?;
                return Some((Cow::Borrowed(p.path(r)), Cow::Owned(p.node(r))));
            }
        })
    }

    /// Move what `over` holds into the packed records: removed ones are
    /// marked dead, new ones merged in order, in place (the records are
    /// never copied whole, so packing needs little more than they take).
    fn pack(&mut self) {
        let over = std::mem::take(&mut self.over);
        let packed = Arc::make_mut(&mut self.packed);
        let mut fresh: Vec<Rec> = Vec::new();
        for (path, node) in over {
            if let Ok(i) = packed
                .recs
                .binary_search_by(|r| packed.path(r).cmp(path.as_str()))
            {
                packed.recs[i].dead = true;
            }
            let Some(node) = node else { continue };
            match packed.pack(&path, &node) {
                Some(rec) => fresh.push(rec),
                None => {
                    self.over.insert(path, Some(node));
                }
            }
        }
        // Merge from the back into the old records' own buffer.
        let mut recs = std::mem::take(&mut packed.recs);
        recs.retain(|r| !r.dead);
        if let Some(&filler) = fresh.first() {
            recs.reserve_exact(fresh.len());
            let (mut i, mut j) = (recs.len(), fresh.len());
            recs.resize(i + j, filler);
            let mut k = recs.len();
            while j > 0 {
                k -= 1;
                if i > 0 && packed.path(&recs[i - 1]) > packed.path(&fresh[j - 1]) {
                    recs[k] = recs[i - 1];
                    i -= 1;
                } else {
                    recs[k] = fresh[j - 1];
                    j -= 1;
                }
            }
        }
        packed.recs = recs;
        self.pack_at = self.over.len() + UNPACKED_MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u64, root: &Path, path: &str) -> Node {
        let kind = match i % 4 {
            0 => FileKind::Dir,
            1 => FileKind::File {
                content: Content::Path(root.join(path.trim_start_matches('/'))),
                size: i,
            },
            2 => FileKind::Symlink(format!("../t{i}")),
            // Content elsewhere than its own path: stays unpacked.
            _ => FileKind::File {
                content: Content::Path(format!("/elsewhere/{i}").into()),
                size: i,
            },
        };
        Node {
            kind,
            mode: 0o644,
            uid: if i.is_multiple_of(7) { 1 << 40 } else { i },
            gid: 3,
            mtime: i as i64,
            xattrs: Default::default(),
            inode: i as u32,
        }
    }

    /// Inserts, replacements and removals, packed every few steps, read
    /// back the same as a plain map of the same operations.
    #[test]
    fn packed_nodes_read_as_a_plain_map() {
        let root = Path::new("/layers/x/root");
        let mut nodes = Nodes::new();
        nodes.pack_at = 50;
        let mut model: BTreeMap<String, Node> = BTreeMap::new();
        let mut seed = 7u64;
        for step in 0..3000u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let path = format!("/d{}/f{}", (seed >> 33) % 9, (seed >> 40) % 60);
            if (seed >> 20).is_multiple_of(5) {
                assert_eq!(nodes.remove(&path), model.remove(&path).is_some(), "{path}");
            } else {
                let n = node(step, root, &path);
                nodes.insert(path.clone(), n.clone());
                model.insert(path, n);
            }
        }
        assert!(!nodes.packed.recs.is_empty(), "nothing was packed");
        let all: Vec<(String, Node)> = nodes
            .range("")
            .map(|(p, n)| (p.into_owned(), n.into_owned()))
            .collect();
        let expected: Vec<(String, Node)> = model.clone().into_iter().collect();
        assert_eq!(all, expected);
        for (p, n) in &model {
            assert_eq!(nodes.get(p).as_deref(), Some(n));
            assert_eq!(nodes.is_dir(p), Some(n.is_dir()));
        }
        let from_d3: Vec<String> = nodes.range("/d3/").map(|(p, _)| p.into_owned()).collect();
        let expected: Vec<String> = model
            .range("/d3/".to_string()..)
            .map(|(p, _)| p.clone())
            .collect();
        assert_eq!(from_d3, expected);
    }
}
