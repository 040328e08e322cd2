//! Where the build context comes from, as Kaniko and docker name it: a
//! directory (`dir://` or a plain path), a tar archive (`tar://FILE`,
//! gzip or plain, or `tar://stdin`), or a git repository (Kaniko's
//! `git://HOST/REPO[#REF[#COMMIT]]`, docker's `https://HOST/REPO.git#REF:SUBDIR`).
//! Archives and repositories are unpacked into the build's work directory.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    Dir(PathBuf),
    Tar(PathBuf),
    Stdin,
    Git {
        url: String,
        reference: Option<String>,
        commit: Option<String>,
        subdir: Option<String>,
    },
}

/// Kaniko's `--git`: `branch=NAME,single-branch=BOOL,recurse-submodules=BOOL`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitOptions {
    pub branch: Option<String>,
    pub single_branch: bool,
    pub recurse_submodules: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("context {0}: not a directory")]
    NotADirectory(String),
    #[error("context {0}: {1}")]
    Unsupported(String, String),
    #[error("--git {0:?}: expected branch=NAME, single-branch=BOOL or recurse-submodules=BOOL")]
    GitOptions(String),
    #[error("unpacking the context archive {what}")]
    Archive {
        what: String,
        #[source]
        source: kiln_layer::LayerError,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching the git context {url}: {message}")]
    Git { url: String, message: String },
    #[error("--context-sub-path {0}: not a directory in the context")]
    SubPath(String),
}

impl GitOptions {
    pub fn parse(text: &str) -> Result<GitOptions, ContextError> {
        let mut o = GitOptions::default();
        let bool_of = |v: &str| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => Some(true),
            "false" | "0" | "f" => Some(false),
            _ => None,
        };
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let bad = || ContextError::GitOptions(part.to_string());
            match part.split_once('=').ok_or_else(bad)? {
                ("branch", v) => o.branch = Some(v.to_string()),
                ("single-branch", v) => o.single_branch = bool_of(v).ok_or_else(bad)?,
                ("recurse-submodules", v) => o.recurse_submodules = bool_of(v).ok_or_else(bad)?,
                _ => return Err(bad()),
            }
        }
        Ok(o)
    }
}

impl ContextSource {
    /// Read a `--context` value. Kaniko's `git://` contexts are fetched
    /// over `$GIT_PULL_METHOD` (https unless set to http), as Kaniko does.
    pub fn parse(text: &str) -> Result<ContextSource, ContextError> {
        if let Some(rest) = text.strip_prefix("dir://") {
            return Ok(ContextSource::Dir(PathBuf::from(rest)));
        }
        if let Some(rest) = text.strip_prefix("tar://") {
            return Ok(match rest {
                "stdin" => ContextSource::Stdin,
                path => ContextSource::Tar(PathBuf::from(path)),
            });
        }
        if let Some(rest) = text.strip_prefix("git://") {
            let method = std::env::var("GIT_PULL_METHOD").unwrap_or_else(|_| "https".into());
            let mut parts = rest.split('#');
            let url = format!("{method}://{}", parts.next().unwrap_or_default());
            let reference = parts.next().filter(|r| !r.is_empty()).map(String::from);
            let commit = parts.next().filter(|c| !c.is_empty()).map(String::from);
            return Ok(ContextSource::Git {
                url,
                reference,
                commit,
                subdir: None,
            });
        }
        let is_git_url = text.starts_with("git@")
            || ((text.starts_with("https://") || text.starts_with("http://"))
                && text.split('#').next().is_some_and(|u| u.ends_with(".git")));
        if is_git_url {
            let (url, fragment) = text.split_once('#').unwrap_or((text, ""));
            let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
            return Ok(ContextSource::Git {
                url: url.to_string(),
                reference: (!reference.is_empty()).then(|| reference.to_string()),
                commit: None,
                subdir: (!subdir.is_empty()).then(|| subdir.to_string()),
            });
        }
        for scheme in ["gs://", "s3://", "https://", "http://"] {
            if text.starts_with(scheme) {
                return Err(ContextError::Unsupported(
                    text.to_string(),
                    "cloud storage and URL contexts are not supported: download the archive and pass tar://FILE".into(),
                ));
            }
        }
        Ok(ContextSource::Dir(PathBuf::from(text)))
    }

    /// The context as a directory: itself, or unpacked under `work`; then
    /// `sub_path` inside it.
    pub fn prepare(
        &self,
        work: &Path,
        git: &GitOptions,
        sub_path: Option<&str>,
    ) -> Result<PathBuf, ContextError> {
        self.prepare_traced(work, git, sub_path).map(|(dir, _)| dir)
    }

    /// As [`ContextSource::prepare`], with a git context's URL and the
    /// commit checked out (provenance's config source).
    pub fn prepare_traced(
        &self,
        work: &Path,
        git: &GitOptions,
        sub_path: Option<&str>,
    ) -> Result<(PathBuf, Option<(String, String)>), ContextError> {
        let mut origin = None;
        let dir = match self {
            ContextSource::Dir(d) => {
                if !d.is_dir() {
                    return Err(ContextError::NotADirectory(d.display().to_string()));
                }
                d.clone()
            }
            ContextSource::Tar(path) => {
                let file = std::fs::File::open(path).map_err(|source| ContextError::Io {
                    context: format!("opening the context archive {}", path.display()),
                    source,
                })?;
                unpack(file, &path.display().to_string(), work)?
            }
            ContextSource::Stdin => unpack(std::io::stdin(), "from stdin", work)?,
            ContextSource::Git {
                url,
                reference,
                commit,
                subdir,
            } => {
                let reference = git.branch.as_ref().or(reference.as_ref());
                let (dir, checked_out) = clone(url, reference, commit.as_deref(), git, work)?;
                origin = Some((url.clone(), checked_out));
                match subdir {
                    Some(s) => within(&dir, s)?,
                    None => dir,
                }
            }
        };
        let dir = match sub_path {
            Some(s) => within(&dir, s)?,
            None => dir,
        };
        Ok((dir, origin))
    }
}

/// `sub` inside `dir`, which must stay inside it.
fn within(dir: &Path, sub: &str) -> Result<PathBuf, ContextError> {
    let bad = || ContextError::SubPath(sub.to_string());
    let joined = dir.join(sub.trim_start_matches('/'));
    let real = joined.canonicalize().map_err(|_| bad())?;
    let base = dir.canonicalize().map_err(|_| bad())?;
    if !real.starts_with(&base) || !real.is_dir() {
        return Err(bad());
    }
    Ok(real)
}

fn unpack(
    input: impl std::io::Read + Send,
    what: &str,
    work: &Path,
) -> Result<PathBuf, ContextError> {
    let dir = work.join("context");
    std::fs::create_dir_all(&dir).map_err(|source| ContextError::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    kiln_layer::apply::extract_layer(input, &dir, what).map_err(|source| {
        ContextError::Archive {
            what: what.to_string(),
            source,
        }
    })?;
    tracing::info!("context unpacked from the archive {what}");
    Ok(dir)
}

fn clone(
    url: &str,
    reference: Option<&String>,
    commit: Option<&str>,
    options: &GitOptions,
    work: &Path,
) -> Result<(PathBuf, String), ContextError> {
    let dir = work.join("context");
    let fetched = clone_into(url, reference.map(String::as_str), commit, options, &dir)?;
    // As BuildKit does by default: the repository's metadata is no source.
    let _ = std::fs::remove_dir_all(dir.join(".git"));
    tracing::info!("context cloned from {url} at {fetched}");
    Ok((dir, fetched))
}

/// `git clone` of `url` (at a branch or tag, then a commit) into `dir`;
/// returns the commit checked out.
pub(crate) fn clone_into(
    url: &str,
    reference: Option<&str>,
    commit: Option<&str>,
    options: &GitOptions,
    dir: &Path,
) -> Result<String, ContextError> {
    let fail = |message: String| ContextError::Git {
        url: url.to_string(),
        message,
    };
    let run = |cmd: &mut Command| -> Result<String, ContextError> {
        let out = cmd
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| fail(format!("running git: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(fail(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    };
    let mut clone = Command::new("git");
    clone.args(["clone", "--quiet"]);
    if let Some(r) = reference {
        // Kaniko names branches as refs/heads/NAME, tags as refs/tags/NAME.
        let name = r
            .strip_prefix("refs/heads/")
            .or_else(|| r.strip_prefix("refs/tags/"))
            .unwrap_or(r);
        clone.args(["--branch", name]);
    }
    if options.single_branch {
        clone.arg("--single-branch");
    }
    if options.recurse_submodules {
        clone.arg("--recurse-submodules");
    }
    run(clone.arg(url).arg(dir))?;
    if let Some(c) = commit {
        run(Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["checkout", "--quiet", c]))?;
    }
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_forms() {
        assert_eq!(
            ContextSource::parse("dir:///w").unwrap(),
            ContextSource::Dir("/w".into())
        );
        assert_eq!(
            ContextSource::parse("tar://stdin").unwrap(),
            ContextSource::Stdin
        );
        assert_eq!(
            ContextSource::parse("tar:///c.tar.gz").unwrap(),
            ContextSource::Tar("/c.tar.gz".into())
        );
        assert_eq!(
            ContextSource::parse("https://h/r.git#main:sub").unwrap(),
            ContextSource::Git {
                url: "https://h/r.git".into(),
                reference: Some("main".into()),
                commit: None,
                subdir: Some("sub".into()),
            }
        );
        assert!(ContextSource::parse("gs://bucket/c.tar.gz").is_err());
        assert_eq!(
            GitOptions::parse("branch=dev,single-branch=true").unwrap(),
            GitOptions {
                branch: Some("dev".into()),
                single_branch: true,
                recurse_submodules: false
            }
        );
        assert!(GitOptions::parse("depth=1").is_err());
    }
}
