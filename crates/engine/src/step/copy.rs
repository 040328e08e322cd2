//! COPY and ADD: sources from the build context, another stage or image
//! (`--from`), or heredocs; `--chown`, `--chmod`, `--exclude`, `--parents`;
//! ADD of a local archive extracts it. The placing rules are in
//! `crate::copy`.

use super::workdir::working_dir;
use super::StepCx;
use crate::chmod::Chmod;
use crate::copy::{
    copy_items, copy_parent_dir, copy_parents_root, extract_archive, is_archive, CopyOptions,
};
use crate::error::BuildError;
use crate::fstree::join;
use crate::ignore::{clean, IgnoreMatcher};
use crate::source::{expand, expand_source, ContextFs, SourceFs, SourceItem, SrcEntry, TreeFs};
use crate::stage::StageState;
use crate::users::resolve_chown;
use kiln_dockerfile::instructions::CopyArgs;
use kiln_dockerfile::Heredoc;
use kiln_layer::Content;
use kiln_layer::FileKind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The file system a COPY reads: the stage or image `--from` names, else
/// the build context.
pub(crate) enum Sources<'a> {
    From(TreeFs<'a>),
    Context(&'a ContextFs),
}

impl Sources<'_> {
    pub fn fs(&self) -> &dyn SourceFs {
        match self {
            Sources::From(t) => t,
            Sources::Context(c) => *c,
        }
    }
}

/// What a COPY reads: the build context, or the files of the stage or
/// image `--from` names (its waiting layers applied first).
pub(crate) fn sources<'a>(cx: &'a StepCx, c: &CopyArgs) -> Result<Sources<'a>, BuildError> {
    Ok(match cx.copy_from {
        Some(from) => Sources::From(TreeFs {
            tree: from.files(&cx.build.layers()).map_err(|e| cx.error(e))?,
            name: c.from.clone().unwrap_or_default(),
        }),
        None => Sources::Context(&cx.build.context),
    })
}

/// The heredoc a COPY source word (`<<EOF`, `<<-"EOF"`) names.
pub(crate) fn heredoc_for<'h>(src: &str, heredocs: &'h [Heredoc]) -> Option<&'h Heredoc> {
    let rest = src.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    heredocs.iter().find(|h| h.name == name)
}

pub fn copy(
    cx: &StepCx,
    state: &mut StageState,
    c: &CopyArgs,
    is_add: bool,
) -> Result<(), BuildError> {
    let kw = if is_add { "ADD" } else { "COPY" };
    let all_urls = c
        .sources
        .iter()
        .all(|s| crate::remote::is_url(s) || crate::remote::git_source(s).is_some());
    if c.checksum.is_some() && !(is_add && all_urls) {
        return Err(cx.error("--checksum can only be used with a URL source"));
    }
    let opts = copy_options(cx, state, c)?;
    let raw_dest = cx.expand(state, &c.dest)?;
    let dest = destination(state, &raw_dest);
    let excludes = excludes(cx, state, c)?;
    let sources = sources(cx, c)?;
    let mut items: Vec<SourceItem> = Vec::new();
    let mut archives: Vec<(PathBuf, String)> = Vec::new();
    let mut shown_sources = Vec::new();
    for src in &c.sources {
        if let Some(h) = heredoc_for(src, &c.heredocs) {
            items.push(heredoc_item(cx, state, h)?);
            shown_sources.push(src.clone());
            continue;
        }
        let src = cx.expand(state, src)?;
        shown_sources.push(src.clone());
        if is_add && crate::remote::is_url(&src) {
            let item = url_item(cx, state, c, &src)?;
            // Remote archives are extracted only with --unpack.
            match local_archive(&item, c.unpack == Some(true)) {
                Some(p) => archives.push((p, item.path.clone())),
                None => items.push(item),
            }
            continue;
        }
        if let Some(g) = crate::remote::git_source(&src).filter(|_| is_add) {
            items.extend(git_items(cx, state, c, &src, g)?);
            continue;
        }
        for mut item in expand(sources.fs(), &src, c.parents).map_err(|e| cx.error(e))? {
            if let Some(ex) = &excludes {
                item.entries
                    .retain(|e| e.rel.is_empty() || !ex.excluded(&e.rel));
            }
            match local_archive(&item, is_add && c.from.is_none() && c.unpack != Some(false)) {
                Some(p) => archives.push((p, item.path.clone())),
                None => items.push(item),
            }
        }
    }
    if items.is_empty() && archives.is_empty() {
        return Err(cx.error(format!("{kw}: no file matches {}", shown_sources.join(" "))));
    }
    let placement = Placement {
        items: &items,
        archives: &archives,
        dest: &dest,
        opts: &opts,
        parents: c.parents,
    };
    let created_by = format!("{kw} {} {}", shown_sources.join(" "), raw_dest);
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
        crate::root::refresh(state, &laid, &[], super::run::fixed_root(cx))
            .map_err(|e| cx.error(e))?;
        return Ok(());
    }
    placement
        .apply(&mut state.tree, &cx.build.staging)
        .map_err(|e| cx.error(e))?;
    cx.commit_and_refresh(state, created_by)
}

fn copy_options(cx: &StepCx, state: &StageState, c: &CopyArgs) -> Result<CopyOptions, BuildError> {
    let chown = match &c.chown {
        Some(spec) => {
            let spec = cx.expand(state, spec)?;
            Some(resolve_chown(&state.tree, &spec).map_err(|e| cx.error(e))?)
        }
        None => None,
    };
    let chmod = match &c.chmod {
        Some(m) => Some(Chmod::parse(&cx.expand(state, m)?).map_err(|e| cx.error(e))?),
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

/// A heredoc source as one file (expanded unless its name was quoted).
fn heredoc_item(cx: &StepCx, state: &StageState, h: &Heredoc) -> Result<SourceItem, BuildError> {
    let mut content = h.effective_content();
    if h.expand {
        let mut lex = cx.build.lex;
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        content = lex
            .process_word(&content, &|k: &str| state.lookup(k))
            .map_err(|e| cx.error(e))?;
    }
    Ok(SourceItem {
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
    })
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

/// `ADD <URL>`: the downloaded file (checked against `--checksum`).
fn url_item(
    cx: &StepCx,
    state: &StageState,
    c: &CopyArgs,
    url: &str,
) -> Result<SourceItem, BuildError> {
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
    Ok(SourceItem {
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
    })
}

/// `ADD <git repository>`: its files (the subdirectory named, `.git` only
/// with `--keep-git-dir`); `--checksum` names the commit.
fn git_items(
    cx: &StepCx,
    state: &StageState,
    c: &CopyArgs,
    src: &str,
    mut g: crate::remote::GitSource,
) -> Result<Vec<SourceItem>, BuildError> {
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
    expand_source(&fs, ".").map_err(|e| cx.error(e))
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
