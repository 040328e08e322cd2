//! `ADD <http(s) URL>`: the file is downloaded once per build into the
//! work directory, hashed while it is written (never held in memory), and
//! checked against `--checksum`. As BuildKit does: the name is the URL
//! path's last segment, the mode 0600, the time the response's
//! Last-Modified (else 0); archives from URLs are not extracted.

use kiln_layer::HashingWriter;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub path: PathBuf,
    /// `sha256:<hex>`.
    pub digest: String,
    pub name: String,
    pub size: u64,
    pub mtime: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
    #[error("{url}: checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("writing {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether an ADD source is a URL kiln downloads.
pub(crate) fn is_url(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && git_source(src).is_none()
}

/// A git repository an ADD names: `https://HOST/REPO.git#REF:SUBDIR`,
/// `git@HOST:REPO.git#REF`, or Dockerfile 1.18's query form
/// `...REPO.git?ref=|tag=|branch=&subdir=&keep-git-dir=&submodules=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GitSource {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
    pub keep_git_dir: bool,
    pub submodules: bool,
}

pub(crate) fn git_source(src: &str) -> Option<GitSource> {
    let (base, fragment) = src.split_once('#').unwrap_or((src, ""));
    let (url, query) = base.split_once('?').unwrap_or((base, ""));
    let is_git = src.starts_with("git@")
        || src.starts_with("git://")
        || ((src.starts_with("https://") || src.starts_with("http://")) && url.ends_with(".git"));
    if !is_git {
        return None;
    }
    let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
    let mut g = GitSource {
        url: url.to_string(),
        reference: (!reference.is_empty()).then(|| reference.to_string()),
        subdir: (!subdir.is_empty()).then(|| subdir.to_string()),
        keep_git_dir: false,
        submodules: true,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "ref" | "tag" | "branch" => g.reference = Some(v.to_string()),
            "subdir" => g.subdir = Some(v.to_string()),
            "keep-git-dir" => g.keep_git_dir = v == "true" || v == "1",
            "submodules" => g.submodules = !(v == "false" || v == "0"),
            _ => {}
        }
    }
    Some(g)
}

pub(crate) struct Remote {
    dir: PathBuf,
    fetched: Mutex<HashMap<String, Fetched>>,
    /// Cloned repositories: their directory and commit.
    cloned: Mutex<HashMap<GitSource, (PathBuf, String)>>,
}

impl Remote {
    pub fn new(dir: PathBuf) -> Remote {
        Remote {
            dir,
            fetched: Mutex::new(HashMap::new()),
            cloned: Mutex::new(HashMap::new()),
        }
    }

    /// The repository `g` names, cloned at its first use in the build: the
    /// directory to copy from (its subdirectory, if named) and the commit.
    pub fn clone_git(
        &self,
        g: &GitSource,
    ) -> Result<(PathBuf, String), crate::context::ContextError> {
        let mut cloned = crate::locks::lock(&self.cloned);
        if let Some(c) = cloned.get(g) {
            return Ok(c.clone());
        }
        let dir = self.dir.join(format!("git-{}", cloned.len()));
        let options = crate::context::GitOptions {
            branch: None,
            single_branch: false,
            recurse_submodules: g.submodules,
        };
        let commit =
            crate::context::clone_into(&g.url, g.reference.as_deref(), None, &options, &dir)?;
        if !g.keep_git_dir {
            let _ = std::fs::remove_dir_all(dir.join(".git"));
        }
        let source = match &g.subdir {
            Some(s) => dir.join(s.trim_start_matches('/')),
            None => dir,
        };
        tracing::info!("cloned {} at {commit}", g.url);
        cloned.insert(g.clone(), (source.clone(), commit.clone()));
        Ok((source, commit))
    }

    /// What was downloaded and cloned: URLs with their sha256, git
    /// repositories with their commit (provenance's materials).
    pub fn materials(&self) -> Vec<kiln_attest::Material> {
        let mut out: Vec<kiln_attest::Material> = crate::locks::lock(&self.fetched)
            .iter()
            .map(|(url, f)| kiln_attest::Material {
                uri: url.clone(),
                digest: (
                    "sha256".into(),
                    f.digest.trim_start_matches("sha256:").into(),
                ),
            })
            .collect();
        out.extend(
            crate::locks::lock(&self.cloned)
                .iter()
                .map(|(g, (_, commit))| kiln_attest::Material {
                    uri: g.url.clone(),
                    digest: ("sha1".into(), commit.clone()),
                }),
        );
        out
    }

    /// The file at `url`, downloaded at its first use in the build.
    pub fn fetch(&self, url: &str) -> Result<Fetched, RemoteError> {
        let mut fetched = crate::locks::lock(&self.fetched);
        if let Some(f) = fetched.get(url) {
            return Ok(f.clone());
        }
        let fail = |message: String| RemoteError::Download {
            url: url.to_string(),
            message,
        };
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut response = client.get(url).send().map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let mtime = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(http_date)
            .unwrap_or(0);
        let write_error = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| RemoteError::Write { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(write_error(&self.dir))?;
        let path = self.dir.join(format!("{}", fetched.len()));
        let file = std::fs::File::create(&path).map_err(write_error(&path))?;
        let mut writer = HashingWriter::new(file);
        std::io::copy(&mut response, &mut writer).map_err(|e| fail(e.to_string()))?;
        let (_, hex, size) = writer.finish();
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').find(|s| !s.is_empty() && !s.contains(':')))
            .unwrap_or("download")
            .to_string();
        let f = Fetched {
            path,
            digest: format!("sha256:{hex}"),
            name,
            size,
            mtime,
        };
        fetched.insert(url.to_string(), f.clone());
        Ok(f)
    }
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) as seconds since 1970.
fn http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == month)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let [h, min, s] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + min * 60 + s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates() {
        assert_eq!(
            super::http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1445412480)
        );
        assert_eq!(super::http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(super::http_date("yesterday"), None);
    }
}
