//! COPY and ADD: sources from the build context, another stage or image
//! (`--from`), or heredocs; `--chown`, `--chmod`, `--exclude`, `--parents`;
//! ADD of a local archive extracts it. The placing rules are in
//! `crate::copy`.

use super::workdir::working_dir;
use super::{Inputs, StepCx};
use crate::chmod::Chmod;
use crate::copy::{
    copy_items, copy_parent_dir, copy_parents_root, extract_archive, is_archive, CopyOptions,
};
use crate::error::BuildError;
use crate::fstree::join;
use crate::ignore::{clean, IgnoreMatcher};
use crate::source::{expand, expand_source, ContextFs, SourceItem, SrcEntry, TreeFs};
use crate::stage::StageState;
use crate::users::resolve_chown;
use kiln_cache::file_part;
use kiln_dockerfile::instructions::CopyArgs;
use kiln_dockerfile::Heredoc;
use kiln_layer::Content;
use kiln_layer::FileKind;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The files of the stage or image `--from` names (its waiting layers
/// applied first); `None` without `--from`.
fn from_stage_files<'a>(cx: &'a StepCx, c: &CopyArgs) -> Result<Option<TreeFs<'a>>, BuildError> {
    let Some(from) = cx.copy_from else {
        return Ok(None);
    };
    Ok(Some(TreeFs {
        tree: from.files(&cx.build.layers()).map_err(|e| cx.error(e))?,
        name: c.from.clone().unwrap_or_default(),
    }))
}

/// The heredoc a COPY source word (`<<EOF`, `<<-"EOF"`) names.
pub(crate) fn heredoc_for<'h>(src: &str, heredocs: &'h [Heredoc]) -> Option<&'h Heredoc> {
    let rest = src.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    heredocs.iter().find(|h| h.name == name)
}

/// A COPY or ADD with its sources read: what `apply` places.
pub(crate) struct ResolvedCopy<'i> {
    pub args: &'i CopyArgs,
    is_add: bool,
    raw_dest: String,
    dest: String,
    /// `--chown`, expanded; looked up in the stage's files when applied.
    pub chown: Option<String>,
    chmod: Option<Chmod>,
    excludes: Option<IgnoreMatcher>,
    /// The sources in their order.
    sources: Vec<Source>,
    /// The source words as expanded, for messages and history.
    shown_sources: Vec<String>,
}

/// One source word, resolved.
enum Source {
    /// Heredocs, URLs, git repositories and context paths: their items,
    /// each with whether ADD extracts it (a local archive).
    Items(Vec<(SourceItem, bool)>),
    /// A path in the stage or image `--from` names: read when applied
    /// (its files are extracted only then; its key stands for them).
    FromStage(String),
}

/// Read what a COPY or ADD copies, and what its key is made of: the
/// mode, owner and content digest of each context file (only when
/// `keyed`), each heredoc's and URL's digest, each git source's commit,
/// or the key of the stage `--from` names.
pub(crate) fn resolve<'i>(
    cx: &StepCx,
    state: &StageState,
    c: &'i CopyArgs,
    is_add: bool,
    keyed: bool,
) -> Result<(ResolvedCopy<'i>, Inputs), BuildError> {
    let all_urls = c
        .sources
        .iter()
        .all(|s| crate::remote::is_url(s) || crate::remote::git_source(s).is_some());
    if c.checksum.is_some() && !(is_add && all_urls) {
        return Err(cx.error("--checksum can only be used with a URL source"));
    }
    let chmod = match &c.chmod {
        Some(m) => Some(Chmod::parse(&cx.expand(state, m)?).map_err(|e| cx.error(e))?),
        None => None,
    };
    let chown = c
        .chown
        .as_deref()
        .map(|s| cx.expand(state, s))
        .transpose()?;
    let raw_dest = cx.expand(state, &c.dest)?;
    let dest = destination(state, &raw_dest);
    let excludes = excludes(cx, state, c)?;
    let mut inputs = Inputs {
        from_stage: cx.copy_from.map(|s| s.cache_key.clone()),
        ..Inputs::default()
    };
    // The key of the stage `--from` names stands for its files.
    let key_files = keyed && inputs.from_stage.is_none();
    let mut sources = Vec::new();
    let mut shown_sources = Vec::new();
    for src in &c.sources {
        if let Some(h) = heredoc_for(src, &c.heredocs) {
            let content = heredoc_content(cx, state, h)?;
            if key_files {
                // The content as written, its args expanded.
                let digest = hex::encode(Sha256::digest(content.as_bytes()));
                inputs.files.insert(format!("<<{}", h.name), digest);
            }
            sources.push(Source::Items(vec![(heredoc_item(cx, h, content), false)]));
            shown_sources.push(src.clone());
            continue;
        }
        let src = cx.expand(state, src)?;
        shown_sources.push(src.clone());
        if is_add && crate::remote::is_url(&src) {
            let (item, digest) = url_item(cx, state, c, &src)?;
            if key_files {
                // What the URL serves now: its content's digest.
                let part = file_part(0o600, 0, 0, Some(&digest));
                inputs.files.insert(src.clone(), part);
            }
            // Remote archives are extracted only with --unpack.
            sources.push(Source::Items(vec![(item, c.unpack == Some(true))]));
            continue;
        }
        if let Some(g) = crate::remote::git_source(&src).filter(|_| is_add) {
            let (items, commit) = git_items(cx, state, c, &src, g)?;
            if key_files {
                inputs.files.insert(src.clone(), format!("git {commit}"));
            }
            sources.push(Source::Items(
                items.into_iter().map(|i| (i, false)).collect(),
            ));
            continue;
        }
        if cx.copy_from.is_some() {
            sources.push(Source::FromStage(src));
            continue;
        }
        let mut items = expand(&cx.build.context, &src, c.parents).map_err(|e| cx.error(e))?;
        exclude(&mut items, excludes.as_ref());
        if key_files {
            super::inputs::insert_entries(&mut inputs, &items).map_err(|e| cx.error(e))?;
        }
        let extracts = is_add && c.unpack != Some(false);
        sources.push(Source::Items(
            items.into_iter().map(|i| (i, extracts)).collect(),
        ));
    }
    let resolved = ResolvedCopy {
        args: c,
        is_add,
        raw_dest,
        dest,
        chown,
        chmod,
        excludes,
        sources,
        shown_sources,
    };
    Ok((resolved, inputs))
}

/// `--exclude`d entries dropped from the items.
fn exclude(items: &mut [SourceItem], excludes: Option<&IgnoreMatcher>) {
    if let Some(ex) = excludes {
        for item in items {
            item.entries
                .retain(|e| e.rel.is_empty() || !ex.excluded(&e.rel));
        }
    }
}

/// Place what `resolve` read.
pub(crate) fn apply(
    cx: &StepCx,
    state: &mut StageState,
    r: ResolvedCopy,
) -> Result<(), BuildError> {
    let c = r.args;
    let kw = if r.is_add { "ADD" } else { "COPY" };
    let opts = copy_options(cx, state, r.chown.as_deref(), r.chmod)?;
    let from = match r.sources.iter().any(|s| matches!(s, Source::FromStage(_))) {
        true => from_stage_files(cx, c)?,
        false => None,
    };
    let mut items: Vec<SourceItem> = Vec::new();
    let mut archives: Vec<(PathBuf, String)> = Vec::new();
    for source in r.sources {
        let resolved = match (source, &from) {
            (Source::Items(items), _) => items,
            (Source::FromStage(src), Some(from)) => {
                let mut read = expand(from, &src, c.parents).map_err(|e| cx.error(e))?;
                exclude(&mut read, r.excludes.as_ref());
                read.into_iter().map(|i| (i, false)).collect()
            }
            (Source::FromStage(_), None) => Vec::new(),
        };
        for (item, extracts) in resolved {
            match local_archive(&item, extracts) {
                Some(p) => archives.push((p, item.path.clone())),
                None => items.push(item),
            }
        }
    }
    let shown_sources = r.shown_sources;
    if items.is_empty() && archives.is_empty() {
        return Err(cx.error(format!("{kw}: no file matches {}", shown_sources.join(" "))));
    }
    let placement = Placement {
        items: &items,
        archives: &archives,
        dest: &r.dest,
        opts: &opts,
        parents: c.parents,
    };
    let created_by = format!("{kw} {} {}", shown_sources.join(" "), r.raw_dest);
    if c.link {
        // A layer of its own, made on an empty tree: independent of what is
        // below it (BuildKit's COPY --link), then laid over the stage.
        let mut upper = crate::fstree::FsTree::new(cx.build.now);
        placement
            .apply(&mut upper, &cx.build.staging)
            .map_err(|e| cx.error(e))?;
        let entries = upper.take_changes();
        cx.commit_entries(state, entries, created_by)?;
        let laid = state.tree.merge(&upper).map_err(|e| cx.error(e))?;
        crate::root::refresh(state, &laid, &[], cx.build.isolation.fixed_root())
            .map_err(|e| cx.error(e))?;
        return Ok(());
    }
    placement
        .apply(&mut state.tree, &cx.build.staging)
        .map_err(|e| cx.error(e))?;
    cx.commit_and_refresh(state, created_by)
}

/// `--chown` looked up in the stage's files (they are there by now).
fn copy_options(
    cx: &StepCx,
    state: &StageState,
    chown: Option<&str>,
    chmod: Option<Chmod>,
) -> Result<CopyOptions, BuildError> {
    let chown = match chown {
        Some(spec) => Some(resolve_chown(&state.tree, spec).map_err(|e| cx.error(e))?),
        None => None,
    };
    Ok(CopyOptions {
        chown,
        chmod,
        now: cx.build.now,
    })
}

/// The destination made absolute against WORKDIR; a trailing `/` (or a
/// `.`) that says "into this directory" is kept.
fn destination(state: &StageState, raw_dest: &str) -> String {
    if raw_dest.starts_with('/') {
        return raw_dest.to_string();
    }
    let keep_slash = raw_dest.ends_with('/') || raw_dest == "." || raw_dest.ends_with("/.");
    let mut d = clean(&format!("{}/{raw_dest}", working_dir(state)));
    if keep_slash && !d.ends_with('/') {
        d.push('/');
    }
    d
}

fn excludes(
    cx: &StepCx,
    state: &StageState,
    c: &CopyArgs,
) -> Result<Option<IgnoreMatcher>, BuildError> {
    if c.excludes.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for e in &c.excludes {
        text.push_str(&cx.expand(state, e)?);
        text.push('\n');
    }
    let matcher = IgnoreMatcher::parse(&text).map_err(|e| cx.error(format!("--exclude: {e}")))?;
    Ok(Some(matcher))
}

/// A heredoc's content (expanded unless its name was quoted).
fn heredoc_content(cx: &StepCx, state: &StageState, h: &Heredoc) -> Result<String, BuildError> {
    let content = h.effective_content();
    if !h.expand {
        return Ok(content);
    }
    let mut lex = cx.build.lex;
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.process_word(&content, &|k: &str| state.lookup(k))
        .map_err(|e| cx.error(e))
}

/// A heredoc source as one file.
fn heredoc_item(cx: &StepCx, h: &Heredoc, content: String) -> SourceItem {
    SourceItem {
        name: h.name.clone(),
        path: h.name.clone(),
        parents: Vec::new(),
        entries: vec![SrcEntry {
            rel: String::new(),
            kind: FileKind::File {
                size: content.len() as u64,
                content: Content::Bytes(Arc::new(content.into_bytes())),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: cx.build.now,
            link_key: None,
            xattrs: BTreeMap::new(),
        }],
    }
}

/// Where a COPY's sources go, applied to the stage's tree or, with
/// `--link`, to an empty one.
struct Placement<'a> {
    items: &'a [SourceItem],
    archives: &'a [(PathBuf, String)],
    dest: &'a str,
    opts: &'a CopyOptions,
    parents: bool,
}

impl Placement<'_> {
    fn apply(
        &self,
        tree: &mut crate::fstree::FsTree,
        staging: &std::path::Path,
    ) -> Result<(), crate::copy::CopyError> {
        let dest = self.dest;
        if self.parents {
            // The source's root is copied onto the destination: a new one
            // takes --chmod too, as in BuildKit.
            copy_parents_root(tree, dest, self.opts)?;
            for item in self.items {
                for dir in &item.parents {
                    copy_parent_dir(tree, &join(dest, &dir.rel), dir, self.opts)?;
                }
                let dir = item.parents.last().map_or("", |d| d.rel.as_str());
                let item_dest = format!("{}/", clean(&format!("{dest}/{dir}")));
                copy_items(tree, std::slice::from_ref(item), &item_dest, self.opts)?;
            }
        } else {
            // Each source in turn, as BuildKit's copier does: into the
            // destination when it is (or ends as) a directory, else onto it.
            copy_items(tree, self.items, dest, self.opts)?;
        }
        for (path, name) in self.archives {
            extract_archive(tree, path, name, dest, self.opts, staging)?;
        }
        Ok(())
    }
}

/// `ADD <URL>`: the downloaded file (checked against `--checksum`), and
/// its content's digest.
fn url_item(
    cx: &StepCx,
    state: &StageState,
    c: &CopyArgs,
    url: &str,
) -> Result<(SourceItem, String), BuildError> {
    let f = cx.build.remote.fetch(url).map_err(|e| cx.error(e))?;
    if let Some(want) = &c.checksum {
        let want = cx.expand(state, want)?;
        if want != f.digest {
            return Err(cx.error(crate::remote::RemoteError::Checksum {
                url: url.to_string(),
                expected: want,
                actual: f.digest,
            }));
        }
    }
    let item = SourceItem {
        name: f.name.clone(),
        path: f.name,
        parents: Vec::new(),
        entries: vec![SrcEntry {
            rel: String::new(),
            kind: FileKind::File {
                content: Content::Path(f.path),
                size: f.size,
            },
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime: f.mtime,
            link_key: None,
            xattrs: BTreeMap::new(),
        }],
    };
    Ok((item, f.digest))
}

/// `ADD <git repository>`: its files (the subdirectory named, `.git` only
/// with `--keep-git-dir`) and its commit; `--checksum` names the commit.
fn git_items(
    cx: &StepCx,
    state: &StageState,
    c: &CopyArgs,
    src: &str,
    mut g: crate::remote::GitSource,
) -> Result<(Vec<SourceItem>, String), BuildError> {
    g.keep_git_dir |= c.keep_git_dir;
    let (dir, commit) = cx.build.remote.clone_git(&g).map_err(|e| cx.error(e))?;
    if let Some(want) = &c.checksum {
        let want = cx.expand(state, want)?;
        if want.is_empty() || !commit.starts_with(&want) {
            return Err(cx.error(crate::remote::RemoteError::Checksum {
                url: src.to_string(),
                expected: want,
                actual: commit,
            }));
        }
    }
    let fs = ContextFs {
        root: dir,
        ignore: crate::ignore::IgnoreMatcher::default(),
    };
    let items = expand_source(&fs, ".").map_err(|e| cx.error(e))?;
    Ok((items, commit))
}

/// A local archive that ADD extracts (not for `--from` sources).
fn local_archive(item: &SourceItem, extracts: bool) -> Option<PathBuf> {
    match &item.root().kind {
        FileKind::File {
            content: Content::Path(p),
            ..
        } if extracts && is_archive(p) => Some(p.clone()),
        _ => None,
    }
}
