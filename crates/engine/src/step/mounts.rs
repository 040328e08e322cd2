//! `RUN --mount` (BuildKit's instructions/commands_runmount.go): cache
//! directories kept under kiln's directory across builds, secrets from
//! `--secret`, tmpfs, and binds of the context or another stage. What a
//! mount shows is never part of the step's layer.

use super::{Inputs, StepCx};
use crate::error::BuildError;
use crate::ignore::clean;
use crate::options::SecretSource;
use crate::stage::StageState;
use kiln_dockerfile::instructions::{
    BindMount, CacheMount, Mount, MountOwner, SecretMount, SshMount, TmpfsMount,
};
use kiln_layer::FileKind;
use kiln_sandbox::{MountSource, StepMount};
use kiln_snapshot::Change;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The mounts of one RUN, and what must stay held while it runs.
pub(crate) struct Mounts {
    pub mounts: Vec<StepMount>,
    /// Variables secrets with `env=` add to the step.
    pub env: Vec<String>,
    /// Paths the snapshot leaves out: each target, where the step's root
    /// has it (behind the image's links).
    pub ignore: Vec<String>,
    /// The targets' parents the tree lacks, made only to hold a mount.
    pub stubs: Vec<String>,
    /// `sharing=locked` caches: their locks, held until the step ends.
    _locks: Vec<File>,
}

pub(crate) fn prepare(
    cx: &StepCx,
    state: &StageState,
    mounts: &[Mount],
    step_dir: &Path,
) -> Result<Mounts, BuildError> {
    let mut out = Mounts {
        mounts: Vec::new(),
        env: Vec::new(),
        ignore: Vec::new(),
        stubs: Vec::new(),
        _locks: Vec::new(),
    };
    let workdir = super::workdir::working_dir(state);
    for (n, m) in mounts.iter().enumerate() {
        let mut target = match m.target() {
            Some(t) => {
                let t = t.to_string();
                Some(clean(&if t.starts_with('/') {
                    t
                } else {
                    format!("{workdir}/{t}")
                }))
            }
            None => None,
        };
        let source = match m {
            Mount::Cache(c) => {
                let target = target
                    .clone()
                    .ok_or_else(|| cx.error("RUN --mount=type=cache needs target="))?;
                let id = c.id.clone().unwrap_or(target.clone());
                let seed = match &c.from {
                    Some(from) => Some(stage_named(cx, from)?),
                    None => None,
                };
                let (dir, lock) = cache_dir(cx, c, &id, seed, step_dir)?;
                out._locks.extend(lock);
                Some(MountSource::Host {
                    path: dir,
                    writable: true,
                })
            }
            Mount::Tmpfs(t) => {
                let size = t.size.as_deref().and_then(|s| s.parse::<u64>().ok());
                Some(MountSource::Tmpfs { size })
            }
            Mount::Secret(s) => secret(cx, s, &target, step_dir, &mut out.env)?,
            Mount::Bind(b) => Some(bind(cx, b, n, step_dir)?),
            Mount::Ssh(s) => {
                let id = s.id.as_deref().unwrap_or("default");
                match cx.build.opts.ssh.iter().find(|(i, _)| i == id) {
                    Some((_, socket)) => {
                        let target =
                            target.get_or_insert_with(|| format!("/run/buildkit/ssh_agent.{n}"));
                        if !out.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                            out.env.push(format!("SSH_AUTH_SOCK={target}"));
                        }
                        Some(MountSource::Host {
                            path: socket.clone(),
                            writable: true,
                        })
                    }
                    None if s.required => {
                        return Err(cx.error(format!("RUN --mount=type=ssh: no SSH agent {id}: pass --ssh {id} (with $SSH_AUTH_SOCK set) or --ssh {id}=SOCKET")));
                    }
                    None => None,
                }
            }
        };
        let (Some(source), Some(target)) = (source, target.or_else(|| default_target(m))) else {
            continue;
        };
        if target == "/" {
            return Err(cx.error("RUN --mount cannot target /"));
        }
        let (made_at, stubs) = stub_paths(state, &target);
        out.ignore.push(made_at);
        out.stubs.extend(stubs);
        out.mounts.push(StepMount { target, source });
    }
    Ok(out)
}

/// A secret without `target=` goes to /run/secrets/ID (unless it is only
/// an environment variable).
fn default_target(m: &Mount) -> Option<String> {
    let Mount::Secret(s) = m else {
        return None;
    };
    if s.env.is_some() {
        return None;
    }
    let id = s.id.clone()?;
    Some(format!("/run/secrets/{id}"))
}

/// Where the sandbox makes `path` for a step (behind the image's links,
/// resolved inside the root), and the parents it makes for it: those the
/// tree lacks.
pub(crate) fn stub_paths(state: &StageState, path: &str) -> (String, Vec<String>) {
    let at = state.tree.resolve(path, true).unwrap_or(path.to_string());
    let mut stubs = Vec::new();
    let mut cur = crate::fstree::parent_of(&at).to_string();
    while cur != "/" && state.tree.get(&cur).is_none() {
        stubs.push(cur.clone());
        cur = crate::fstree::parent_of(&cur).to_string();
    }
    (at, stubs)
}

/// The step's changes without the stubs it left empty: directories made
/// only to hold a mount or /etc/resolv.conf are not part of the layer, as
/// BuildKit removes them after the step (`executor/stubs.go`); a stub the
/// step put files in stays.
pub(crate) fn without_empty_stubs(mut changes: Vec<Change>, stubs: &[String]) -> Vec<Change> {
    let mut stubs = stubs.to_vec();
    // Deepest first: a stub holding only an empty stub is empty too.
    stubs.sort_by_key(|s| std::cmp::Reverse(s.len()));
    stubs.dedup();
    for stub in stubs {
        let below = format!("{stub}/");
        if changes.iter().any(|c| c.path().starts_with(&below)) {
            continue;
        }
        changes.retain(
            |c| !matches!(c, Change::Upsert(p, meta) if *p == stub && meta.kind == FileKind::Dir),
        );
    }
    changes
}

/// The step's changes without the folders whose only change is kiln's:
/// an existing folder (`touched`) that kiln put a mount target or stub in
/// has a new mtime when the stub is gone, or not, as the clock's second
/// happens to fall. It is the layer's only when the step changed
/// something in it or its owner, mode or attributes.
pub(crate) fn without_touched_parents(
    mut changes: Vec<Change>,
    touched: &[String],
    tree: &crate::fstree::FsTree,
) -> Vec<Change> {
    for dir in touched {
        let below = format!("{dir}/");
        if changes.iter().any(|c| c.path().starts_with(&below)) {
            continue;
        }
        let Some(before) = tree.get(dir) else {
            continue;
        };
        changes.retain(|c| match c {
            Change::Upsert(p, meta) if p == dir && meta.kind == FileKind::Dir => {
                !(before.is_dir()
                    && before.mode == meta.mode
                    && before.uid == meta.uid
                    && before.gid == meta.gid
                    && before.xattrs.same_as(&meta.xattrs))
            }
            _ => true,
        });
    }
    changes
}

/// The existing folders kiln makes something in for a step: the parents
/// of the mount targets, stubs and sandbox files (`made`) the tree lacks.
pub(crate) fn touched_parents(tree: &crate::fstree::FsTree, made: &[String]) -> Vec<String> {
    let mut out: Vec<String> = made
        .iter()
        .filter(|p| tree.get(p).is_none())
        .map(|p| crate::fstree::parent_of(p).to_string())
        .filter(|parent| parent != "/" && tree.is_dir(parent) == Some(true))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A cache's directory under kiln's directory, made the first time with
/// mode/uid/gid and, with `from=`, the files of `source` in that stage or
/// image (BuildKit keys such a cache by its id and its base, so each base
/// has its own). `sharing=locked` holds a lock for the step, `private`
/// takes a fresh directory when another build holds it.
fn cache_dir(
    cx: &StepCx,
    m: &CacheMount,
    id: &str,
    seed: Option<&StageState>,
    step_dir: &Path,
) -> Result<(PathBuf, Option<File>), BuildError> {
    let err = |e: std::io::Error| cx.error(format!("cache mount {id}: {e}"));
    let source = clean(&format!("/{}", m.source.as_deref().unwrap_or("")));
    let key = match seed {
        Some(s) => format!("{id}\n{}\n{source}", s.cache_key),
        None => id.to_string(),
    };
    let name = hex::encode(&Sha256::digest(key.as_bytes())[..12]);
    let root = cx.build.opts.kiln_dir.join("mounts").join("cache");
    std::fs::create_dir_all(&root).map_err(err)?;
    let dir = root.join(&name);
    if !dir.exists() {
        // Made aside and renamed, so a concurrent build sees all or nothing.
        let aside = root.join(format!(".new-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&aside);
        std::fs::create_dir(&aside).map_err(err)?;
        let made = match seed {
            Some(s) => {
                write_subtree(cx, s, &source, &aside)?;
                aside.join(source.trim_start_matches('/'))
            }
            None => aside.clone(),
        };
        if !made.is_dir() {
            let _ = std::fs::remove_dir_all(&aside);
            return Err(cx.error(format!(
                "cache mount {id}: {source} is not a directory in from="
            )));
        }
        set_owner_and_mode(&m.owner, &made, 0o755).map_err(err)?;
        let renamed = std::fs::rename(&made, &dir);
        let _ = std::fs::remove_dir_all(&aside);
        if let Err(e) = renamed {
            if !dir.exists() {
                return Err(err(e));
            }
        }
    }
    let sharing = m.sharing.as_deref().unwrap_or("shared");
    if sharing == "shared" {
        return Ok((dir, None));
    }
    let lock = File::create(root.join(format!("{name}.lock"))).map_err(err)?;
    let blocking = sharing == "locked";
    let op = if blocking {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), op) } == 0 {
        return Ok((dir, Some(lock)));
    }
    if blocking {
        return Err(err(std::io::Error::last_os_error()));
    }
    // private, and another build has it: a directory of this build's own.
    let own = step_dir.join(format!("cache-{name}"));
    std::fs::create_dir_all(&own).map_err(err)?;
    Ok((own, None))
}

/// What a mount's `from=` names: an earlier stage, else an image fetched
/// before the stage began.
pub(crate) fn stage_named<'c>(cx: &'c StepCx, from: &str) -> Result<&'c StageState, BuildError> {
    let found = match cx.build.plan.stage_index(from) {
        Some(i) => cx.stages.get(&i),
        None => cx.images.get(from),
    };
    found.map(|s| &**s).ok_or_else(|| {
        cx.error(format!(
            "RUN --mount from={from}: not an earlier stage or an image"
        ))
    })
}

/// Writes `rel` (a directory or a file) of `from`'s tree under `dir`, at
/// the same relative path, with the directories leading to it.
fn write_subtree(cx: &StepCx, from: &StageState, rel: &str, dir: &Path) -> Result<(), BuildError> {
    let under = format!("{}/", rel.trim_end_matches('/'));
    let leads_to_rel = |p: &str| rel.starts_with(&format!("{}/", p.trim_end_matches('/')));
    let tree = from.files(&cx.build.layers()).map_err(|e| cx.error(e))?;
    let paths: Vec<String> = tree
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p == rel || p.starts_with(&under) || leads_to_rel(p) || rel == "/")
        .map(|p| p.into_owned())
        .collect();
    crate::materialize::write_paths(tree, dir, &paths, &|_| false).map_err(|e| cx.error(e))
}

/// The mount's `uid=`/`gid=` (default 0) and `mode=` (octal) on `path`.
/// The owner is best effort: unprivileged, chown to other IDs fails and
/// the path keeps the caller's.
fn set_owner_and_mode(owner: &MountOwner, path: &Path, default_mode: u32) -> std::io::Result<()> {
    let id_of = |v: &Option<String>| {
        v.as_deref()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let _ = std::os::unix::fs::chown(path, Some(id_of(&owner.uid)), Some(id_of(&owner.gid)));
    let mode = (owner.mode.as_deref())
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .unwrap_or(default_mode);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A secret from `--secret`: a file for the mount (mode/uid/gid), and/or
/// an environment variable (`env=`). Missing: an error when `required`.
fn secret(
    cx: &StepCx,
    m: &SecretMount,
    target: &Option<String>,
    step_dir: &Path,
    env: &mut Vec<String>,
) -> Result<Option<MountSource>, BuildError> {
    let id = match (m.id.as_deref(), target) {
        (Some(id), _) => id.to_string(),
        (None, Some(t)) => t.rsplit('/').next().unwrap_or("").to_string(),
        (None, None) => return Err(cx.error("RUN --mount=type=secret needs id= or target=")),
    };
    let value = match cx.build.opts.secrets.iter().find(|(i, _)| *i == id) {
        Some((_, SecretSource::File(p))) => Some(
            std::fs::read(p)
                .map_err(|e| cx.error(format!("secret {id}: reading {}: {e}", p.display())))?,
        ),
        Some((_, SecretSource::Env(v))) => std::env::var(v).ok().map(String::into_bytes),
        None => None,
    };
    let Some(value) = value else {
        if m.required {
            return Err(cx.error(format!(
                "secret {id} is required: pass --secret id={id},src=FILE or id={id},env=VAR"
            )));
        }
        return Ok(None);
    };
    if let Some(var) = &m.env {
        env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
        if target.is_none() {
            return Ok(None);
        }
    }
    let dir = step_dir.join("secrets");
    std::fs::create_dir_all(&dir).map_err(|e| cx.error(format!("secret {id}: {e}")))?;
    let file = dir.join(hex::encode(&Sha256::digest(id.as_bytes())[..8]));
    std::fs::write(&file, &value).map_err(|e| cx.error(format!("secret {id}: {e}")))?;
    set_owner_and_mode(&m.owner, &file, 0o400)
        .map_err(|e| cx.error(format!("secret {id}: {e}")))?;
    Ok(Some(MountSource::Host {
        path: file,
        writable: false,
    }))
}

/// A bind of the context (default) or another stage's files: `source`
/// stays inside what it names; `rw` writes to a throwaway copy.
fn bind(cx: &StepCx, m: &BindMount, n: usize, step_dir: &Path) -> Result<MountSource, BuildError> {
    let rel = clean(&format!("/{}", m.source.as_deref().unwrap_or_default()));
    let writable = m.readwrite;
    let copy_dir = step_dir.join(format!("bind-{n}"));
    let path = match &m.from {
        None => {
            // Inside the context: symlinks resolved within it, never out
            // (Buildah's CVE-2024-1753).
            let fs = &cx.build.context;
            let resolved = crate::source::SourceFs::resolve(fs, rel.trim_start_matches('/'))
                .map_err(|e| cx.error(e))?;
            let host = fs.root.join(resolved);
            if !host.exists() {
                return Err(cx.error(format!(
                    "RUN --mount=type=bind: {rel} is not in the build context"
                )));
            }
            if writable {
                kiln_sandbox::copy_tree(&host, &copy_dir)
                    .map_err(|e| cx.error(format!("bind {rel}: {e}")))?;
                copy_dir
            } else {
                host
            }
        }
        Some(from) => {
            let from = stage_named(cx, from)?;
            write_subtree(cx, from, &rel, &copy_dir)?;
            copy_dir.join(rel.trim_start_matches('/'))
        }
    };
    Ok(MountSource::Host { path, writable })
}

/// What a RUN's mounts bring in, as key inputs: the context files a bind
/// shows, the key of the stage or image a bind or cache comes `from=`
/// (BuildKit makes them inputs of the step). What cannot be read is an
/// error, never a key that leaves it out.
pub(crate) fn inputs(cx: &StepCx, mounts: &[Mount]) -> Result<Inputs, BuildError> {
    let mut inputs = Inputs::default();
    for (n, m) in mounts.iter().enumerate() {
        let (source, is_bind) = match m {
            Mount::Bind(b) => (&b.source, true),
            Mount::Cache(c) => (&c.source, false),
            _ => continue,
        };
        let rel = clean(&format!("/{}", source.as_deref().unwrap_or_default()));
        let prefix = format!("mount {n} ");
        match m.from() {
            Some(from) => {
                let s = stage_named(cx, from)?;
                inputs
                    .files
                    .insert(format!("{prefix}from"), format!("{} {rel}", s.cache_key));
            }
            None if is_bind => {
                let within = match rel.trim_start_matches('/') {
                    "" => ".",
                    r => r,
                };
                let items = crate::source::expand_source(&cx.build.context, within)
                    .map_err(|e| cx.error(e))?;
                super::inputs::insert_entries_under(&mut inputs, &prefix, &items)
                    .map_err(|e| cx.error(e))?;
            }
            None => {}
        }
    }
    Ok(inputs)
}

/// The mounts with every option's words expanded, once, as BuildKit's
/// `parseMount` (instructions/commands_runmount.go) expands each value.
pub(crate) fn expanded(
    cx: &StepCx,
    state: &StageState,
    mounts: &[Mount],
) -> Result<Vec<Mount>, BuildError> {
    let word = |w: &Option<String>| -> Result<Option<String>, BuildError> {
        w.as_deref().map(|w| cx.expand(state, w)).transpose()
    };
    let owner = |o: &MountOwner| -> Result<MountOwner, BuildError> {
        Ok(MountOwner {
            mode: word(&o.mode)?,
            uid: word(&o.uid)?,
            gid: word(&o.gid)?,
        })
    };
    mounts
        .iter()
        .map(|m| {
            Ok(match m {
                Mount::Bind(b) => Mount::Bind(BindMount {
                    target: word(&b.target)?,
                    source: word(&b.source)?,
                    from: word(&b.from)?,
                    readwrite: b.readwrite,
                }),
                Mount::Cache(c) => Mount::Cache(CacheMount {
                    target: word(&c.target)?,
                    id: word(&c.id)?,
                    source: word(&c.source)?,
                    from: word(&c.from)?,
                    sharing: word(&c.sharing)?,
                    owner: owner(&c.owner)?,
                }),
                Mount::Tmpfs(t) => Mount::Tmpfs(TmpfsMount {
                    target: word(&t.target)?,
                    size: word(&t.size)?,
                }),
                Mount::Secret(s) => Mount::Secret(SecretMount {
                    target: word(&s.target)?,
                    id: word(&s.id)?,
                    env: word(&s.env)?,
                    required: s.required,
                    owner: owner(&s.owner)?,
                }),
                Mount::Ssh(s) => Mount::Ssh(SshMount {
                    target: word(&s.target)?,
                    id: word(&s.id)?,
                    required: s.required,
                }),
            })
        })
        .collect()
}
