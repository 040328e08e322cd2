//! Where COPY/ADD read from: the build context (a directory on disk, with
//! .dockerignore applied) or another stage's tree. Both give the same
//! listing of entries, relative to the source path the user named.

use crate::fstree::{resolve_in_root, FileKind, FsTree};
use crate::ignore::{clean, glob_match, has_wildcard, IgnoreMatcher};
use kiln_layer::file::{kind_of, read_xattrs};
use kiln_layer::Content;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SrcEntry {
    /// Path below the named source ("" for the source itself).
    pub rel: String,
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Same key, same file: hard links are kept within one COPY.
    pub link_key: Option<(u64, u64)>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// One matched source: its name (for `dest/<name>`) and its entries, the
/// source itself first.
#[derive(Debug, Clone)]
pub struct SourceItem {
    pub name: String,
    /// Path of the source as the user's source system names it.
    pub path: String,
    pub entries: Vec<SrcEntry>,
    /// With `COPY --parents`: the directories between the source's root
    /// (or its `/./` pivot) and the source, outermost first, each `rel`
    /// its path below that root; empty otherwise.
    pub parents: Vec<SrcEntry>,
}

impl SourceItem {
    pub fn root(&self) -> &SrcEntry {
        &self.entries[0]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}: not found in {1}")]
    NotFound(String, String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: too many levels of symbolic links")]
    SymlinkLoop(String),
}

/// A file system COPY can read from.
pub trait SourceFs {
    /// Human name for messages ("build context", "stage builder").
    fn describe(&self) -> String;
    /// Resolve symlinks of a clean relative path inside the source root.
    fn resolve(&self, rel: &str) -> Result<String, SourceError>;
    /// Names in directory `rel` ("" is the root), excluded ones left out.
    fn list(&self, rel: &str) -> Vec<String>;
    fn is_dir(&self, rel: &str) -> bool;
    fn exists(&self, rel: &str) -> bool;
    /// Entries of the (resolved) path `rel`.
    fn collect(&self, rel: &str) -> Result<Vec<SrcEntry>, SourceError>;
    /// The (resolved) path `rel` alone, without what a directory holds.
    fn entry(&self, rel: &str) -> Result<SrcEntry, SourceError>;
}

/// Match `src` (as written, after expansion) against `fs`: a wildcard may
/// match many (or no) paths; a plain path must exist.
pub fn expand_source(fs: &dyn SourceFs, src: &str) -> Result<Vec<SourceItem>, SourceError> {
    let cleaned = clean(&format!("/{src}"));
    let rel = cleaned.trim_start_matches('/').to_string();
    let paths = if has_wildcard(&rel) {
        let mut found = Vec::new();
        glob(fs, "", &rel.split('/').collect::<Vec<_>>(), &mut found);
        found
    } else {
        vec![rel]
    };
    let mut items = Vec::new();
    for p in paths {
        let resolved = fs.resolve(&p)?;
        if !fs.exists(&resolved) {
            return Err(SourceError::NotFound(
                if p.is_empty() { ".".into() } else { p },
                fs.describe(),
            ));
        }
        let name = p.rsplit('/').next().unwrap_or("").to_string();
        items.push(SourceItem {
            name,
            path: p,
            entries: fs.collect(&resolved)?,
            parents: Vec::new(),
        });
    }
    Ok(items)
}

/// The sources `src` names, with the directories leading to each when
/// `parents` (`COPY --parents`): COPY and its cache key read them alike.
pub fn expand(fs: &dyn SourceFs, src: &str, parents: bool) -> Result<Vec<SourceItem>, SourceError> {
    match parents {
        true => expand_with_parents(fs, src),
        false => expand_source(fs, src),
    }
}

/// [`expand_source`] for `COPY --parents`: each item also carries the
/// directories leading to it below the source's root, or below the pivot
/// `src` names with `/./` (BuildKit's dockerfile2llb/convert_copy.go
/// copies them with the source's metadata).
fn expand_with_parents(fs: &dyn SourceFs, src: &str) -> Result<Vec<SourceItem>, SourceError> {
    let pivot = match src.split_once("/./") {
        Some((p, _)) => clean(&format!("/{p}")).trim_start_matches('/').to_string(),
        None => String::new(),
    };
    let mut items = expand_source(fs, src)?;
    for item in &mut items {
        let below = match item.path.strip_prefix(&pivot) {
            Some(b) => b.trim_start_matches('/'),
            None => item.path.as_str(),
        };
        let comps: Vec<&str> = below.split('/').filter(|c| !c.is_empty()).collect();
        for depth in 1..comps.len() {
            let rel = comps[..depth].join("/");
            let in_source = if pivot.is_empty() {
                rel.clone()
            } else {
                format!("{pivot}/{rel}")
            };
            let mut dir = fs.entry(&fs.resolve(&in_source)?)?;
            dir.rel = rel;
            item.parents.push(dir);
        }
    }
    Ok(items)
}

fn glob(fs: &dyn SourceFs, dir: &str, comps: &[&str], out: &mut Vec<String>) {
    let Some((first, rest)) = comps.split_first() else {
        out.push(dir.to_string());
        return;
    };
    let candidates: Vec<String> = if has_wildcard(first) {
        fs.list(dir)
            .into_iter()
            .filter(|n| glob_match(first, n))
            .collect()
    } else {
        vec![first.to_string()]
    };
    for name in candidates {
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let Ok(resolved) = fs.resolve(&path) else {
            continue;
        };
        if !fs.exists(&resolved) {
            continue;
        }
        if rest.is_empty() {
            out.push(path);
        } else if fs.is_dir(&resolved) {
            glob(fs, &resolved, rest, out);
        }
    }
}

/// The build context directory.
pub struct ContextFs {
    pub root: PathBuf,
    pub ignore: IgnoreMatcher,
}

impl ContextFs {
    fn abs(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn describe_entry(&self, rel_in_item: String, path: &Path, md: &std::fs::Metadata) -> SrcEntry {
        let ft = md.file_type();
        // A socket is copied as an (empty) file, as docker does.
        let kind = kind_of(path, md).unwrap_or(FileKind::File {
            content: Content::Path(path.to_path_buf()),
            size: md.len(),
        });
        let link_key = (ft.is_file() && md.nlink() > 1).then(|| (md.dev(), md.ino()));
        // File capabilities and `user.*`: SELinux labels and ACLs belong
        // to the build host.
        let xattrs = read_xattrs(path, md, |n| {
            n == "security.capability" || n.starts_with("user.")
        });
        SrcEntry {
            rel: rel_in_item,
            kind,
            mode: md.mode() & 0o7777,
            // Files from the context belong to root unless --chown says otherwise.
            uid: 0,
            gid: 0,
            mtime: md.mtime(),
            link_key,
            xattrs,
        }
    }
}

impl SourceFs for ContextFs {
    fn describe(&self) -> String {
        "the build context".into()
    }

    fn resolve(&self, rel: &str) -> Result<String, SourceError> {
        let readlink = |p: &str| {
            let path = self.abs(p);
            let md = std::fs::symlink_metadata(&path).ok()?;
            if !md.file_type().is_symlink() {
                return None;
            }
            std::fs::read_link(&path)
                .ok()
                .map(|t| t.to_string_lossy().into_owned())
        };
        resolve_in_root(rel, true, readlink)
            .ok_or_else(|| SourceError::SymlinkLoop(rel.to_string()))
    }

    fn list(&self, rel: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.abs(rel)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let p = if rel.is_empty() {
                    n.clone()
                } else {
                    format!("{rel}/{n}")
                };
                !self.ignore.excluded(&p)
            })
            .collect();
        names.sort();
        names
    }

    fn is_dir(&self, rel: &str) -> bool {
        self.abs(rel).is_dir()
    }

    fn exists(&self, rel: &str) -> bool {
        let Ok(md) = std::fs::symlink_metadata(self.abs(rel)) else {
            return false;
        };
        // An excluded directory is still there when an exception may
        // re-include something inside it.
        rel.is_empty()
            || !self.ignore.excluded(rel)
            || (md.is_dir() && self.ignore.has_exceptions())
    }

    fn entry(&self, rel: &str) -> Result<SrcEntry, SourceError> {
        let path = self.abs(rel);
        let md = std::fs::metadata(&path).map_err(|e| SourceError::Io {
            path: rel.to_string(),
            source: e,
        })?;
        Ok(self.describe_entry(String::new(), &path, &md))
    }

    fn collect(&self, rel: &str) -> Result<Vec<SrcEntry>, SourceError> {
        let root = self.abs(rel);
        let io = |e: std::io::Error| SourceError::Io {
            path: if rel.is_empty() {
                ".".into()
            } else {
                rel.to_string()
            },
            source: e,
        };
        let md = std::fs::metadata(&root).map_err(io)?;
        let mut entries = vec![self.describe_entry(String::new(), &root, &md)];
        if !md.is_dir() {
            return Ok(entries);
        }
        let walk_exceptions = self.ignore.has_exceptions();
        let mut excluded_dirs: BTreeMap<String, SrcEntry> = BTreeMap::new();
        let mut included: Vec<SrcEntry> = Vec::new();
        let mut it = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter();
        while let Some(next) = it.next() {
            let e = next.map_err(|e| io(e.into()))?;
            let below = e
                .path()
                .strip_prefix(&root)
                .unwrap_or(e.path())
                .to_string_lossy()
                .into_owned();
            let in_ctx = if rel.is_empty() {
                below.clone()
            } else {
                format!("{rel}/{below}")
            };
            let md = e.metadata().map_err(|e| io(e.into()))?;
            let entry = self.describe_entry(below, e.path(), &md);
            if self.ignore.excluded(&in_ctx) {
                if md.is_dir() {
                    if walk_exceptions {
                        excluded_dirs.insert(entry.rel.clone(), entry);
                    } else {
                        it.skip_current_dir();
                    }
                }
                continue;
            }
            included.push(entry);
        }
        // An excluded directory still appears when an exception re-includes
        // something inside it.
        let mut needed: BTreeSet<String> = BTreeSet::new();
        for e in &included {
            let mut p = e.rel.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                if excluded_dirs.contains_key(p) {
                    needed.insert(p.to_string());
                }
            }
        }
        included.extend(needed.into_iter().filter_map(|p| excluded_dirs.remove(&p)));
        included.sort_by(|a, b| a.rel.split('/').cmp(b.rel.split('/')));
        entries.extend(included);
        Ok(entries)
    }
}

/// Another stage's file system (COPY --from=stage).
pub struct TreeFs<'a> {
    pub tree: &'a FsTree,
    pub name: String,
}

impl TreeFs<'_> {
    fn abs(rel: &str) -> String {
        format!("/{rel}")
    }

    fn node_entry(&self, rel_in_item: String, path: &str) -> Option<SrcEntry> {
        let n = self.tree.get(path)?;
        let kind = n.kind.clone();
        Some(SrcEntry {
            rel: rel_in_item,
            link_key: matches!(kind, FileKind::File { .. }).then_some((0, u64::from(n.inode))),
            kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            xattrs: n.xattrs.to_map(),
        })
    }
}

impl SourceFs for TreeFs<'_> {
    fn describe(&self) -> String {
        format!("stage {}", self.name)
    }

    fn resolve(&self, rel: &str) -> Result<String, SourceError> {
        self.tree
            .resolve(&Self::abs(rel), true)
            .map(|p| p.trim_start_matches('/').to_string())
            .map_err(|_| SourceError::SymlinkLoop(rel.to_string()))
    }

    fn list(&self, rel: &str) -> Vec<String> {
        self.tree.children(&clean(&Self::abs(rel)))
    }

    fn is_dir(&self, rel: &str) -> bool {
        self.tree
            .get(&clean(&Self::abs(rel)))
            .is_some_and(|n| n.is_dir())
    }

    fn exists(&self, rel: &str) -> bool {
        self.tree.get(&clean(&Self::abs(rel))).is_some()
    }

    fn entry(&self, rel: &str) -> Result<SrcEntry, SourceError> {
        self.node_entry(String::new(), &clean(&Self::abs(rel)))
            .ok_or_else(|| SourceError::NotFound(rel.to_string(), self.describe()))
    }

    fn collect(&self, rel: &str) -> Result<Vec<SrcEntry>, SourceError> {
        let root = clean(&Self::abs(rel));
        let mut entries: Vec<SrcEntry> =
            self.node_entry(String::new(), &root).into_iter().collect();
        if entries.is_empty() {
            return Err(SourceError::NotFound(rel.to_string(), self.describe()));
        }
        if self.tree.get(&root).is_some_and(|n| n.is_dir()) {
            for p in self.tree.descendants(&root) {
                let below = p[if root == "/" { 1 } else { root.len() + 1 }..].to_string();
                entries.extend(self.node_entry(below, &p));
            }
            entries[1..].sort_by(|a, b| a.rel.split('/').cmp(b.rel.split('/')));
        }
        Ok(entries)
    }
}
