//! RUN's flags as types: `--mount` (BuildKit's
//! instructions/commands_runmount.go), `--network`, `--security`.

use crate::flags::Flags;
use crate::instructions::Command;
use crate::invalid::Invalid;
use crate::parser::{Heredoc, Node};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunArgs {
    pub command: Command,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub security: Security,
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network` (BuildKit's `instructions/commands_runnetwork.go`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security` (BuildKit's `instructions/commands_runsecurity.go`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Security {
    #[default]
    Sandbox,
    Insecure,
}

/// The kinds of `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// `mode=`, `uid=`, `gid=` of a mount that makes a file or directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MountOwner {
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
}

/// One `RUN --mount=...`, by type with the options it takes (BuildKit's
/// `instructions/commands_runmount.go`). Values are words as written,
/// expanded by the step; `target=` has its aliases `dst=` and
/// `destination=`, `source=` its alias `src=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Mount {
    Bind(BindMount),
    Cache(CacheMount),
    Tmpfs(TmpfsMount),
    Secret(SecretMount),
    Ssh(SshMount),
}

/// The build context (or `from=` a stage or image), read-only unless `rw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindMount {
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub readwrite: bool,
}

/// A directory kept across builds, by `id` (default: the target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheMount {
    pub target: Option<String>,
    pub id: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    /// `shared` (default), `private` or `locked`.
    pub sharing: Option<String>,
    pub owner: MountOwner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TmpfsMount {
    pub target: Option<String>,
    /// Bytes.
    pub size: Option<String>,
}

/// A `--secret` as a file and/or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMount {
    pub target: Option<String>,
    pub id: Option<String>,
    pub env: Option<String>,
    pub required: bool,
    pub owner: MountOwner,
}

/// A `--ssh` agent socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshMount {
    pub target: Option<String>,
    pub id: Option<String>,
    pub required: bool,
}

impl Mount {
    pub fn parse(spec: &str) -> Result<Mount, Invalid> {
        let mut kind = MountKind::Bind;
        let mut options: Vec<(String, String)> = Vec::new();
        for field in spec.split(',').filter(|f| !f.is_empty()) {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            let k = k.trim().to_ascii_lowercase();
            if k == "type" {
                kind = match v {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    "secret" => MountKind::Secret,
                    "ssh" => MountKind::Ssh,
                    other => return Err(Invalid::MountType(other.to_string())),
                };
            } else {
                options.push((k, v.to_string()));
            }
        }
        let value = |keys: &[&str]| {
            keys.iter().find_map(|key| {
                options
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            })
        };
        // A flag is on when named alone or `=true`.
        let flag = |key: &str| {
            options
                .iter()
                .any(|(k, v)| k == key && (v.is_empty() || v == "true"))
        };
        let target = value(&["target", "dst", "destination"]);
        let owner = || MountOwner {
            mode: value(&["mode"]),
            uid: value(&["uid"]),
            gid: value(&["gid"]),
        };
        Ok(match kind {
            MountKind::Bind => Mount::Bind(BindMount {
                target,
                source: value(&["source", "src"]),
                from: value(&["from"]),
                readwrite: flag("rw") || flag("readwrite"),
            }),
            MountKind::Cache => Mount::Cache(CacheMount {
                target,
                id: value(&["id"]),
                source: value(&["source", "src"]),
                from: value(&["from"]),
                sharing: value(&["sharing"]),
                owner: owner(),
            }),
            MountKind::Tmpfs => Mount::Tmpfs(TmpfsMount {
                target,
                size: value(&["size"]),
            }),
            MountKind::Secret => Mount::Secret(SecretMount {
                target,
                id: value(&["id"]),
                env: value(&["env"]),
                required: flag("required"),
                owner: owner(),
            }),
            MountKind::Ssh => Mount::Ssh(SshMount {
                target,
                id: value(&["id"]),
                required: flag("required"),
            }),
        })
    }

    pub fn kind(&self) -> MountKind {
        match self {
            Mount::Bind(_) => MountKind::Bind,
            Mount::Cache(_) => MountKind::Cache,
            Mount::Tmpfs(_) => MountKind::Tmpfs,
            Mount::Secret(_) => MountKind::Secret,
            Mount::Ssh(_) => MountKind::Ssh,
        }
    }

    /// `target=`, as written.
    pub fn target(&self) -> Option<&str> {
        match self {
            Mount::Bind(m) => m.target.as_deref(),
            Mount::Cache(m) => m.target.as_deref(),
            Mount::Tmpfs(m) => m.target.as_deref(),
            Mount::Secret(m) => m.target.as_deref(),
            Mount::Ssh(m) => m.target.as_deref(),
        }
    }

    /// `from=`: the stage or image a bind or cache mount reads.
    pub fn from(&self) -> Option<&str> {
        match self {
            Mount::Bind(m) => m.from.as_deref(),
            Mount::Cache(m) => m.from.as_deref(),
            _ => None,
        }
    }
}

/// RUN's arguments: its command and typed flags.
pub(crate) fn run_args(node: &Node, command: Command) -> Result<RunArgs, Invalid> {
    let flags = Flags::parse(node, &["mount", "network", "security"])?;
    Ok(RunArgs {
        command,
        mounts: flags
            .strings("mount")?
            .iter()
            .map(|m| Mount::parse(m))
            .collect::<Result<_, _>>()?,
        network: match flags.string("network")?.as_deref() {
            None | Some("default") => Network::Default,
            Some("none") => Network::None,
            Some("host") => Network::Host,
            Some(other) => return Err(Invalid::Network(other.to_string())),
        },
        security: match flags.string("security")?.as_deref() {
            None | Some("sandbox") => Security::Sandbox,
            Some("insecure") => Security::Insecure,
            Some(other) => return Err(Invalid::Security(other.to_string())),
        },
        heredocs: node.heredocs.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_into_their_types_with_aliases_and_flags() {
        let cache = Mount::parse("type=cache,dst=/c,id=x,sharing=locked,mode=0700,uid=1").unwrap();
        assert_eq!(
            cache,
            Mount::Cache(CacheMount {
                target: Some("/c".into()),
                id: Some("x".into()),
                source: None,
                from: None,
                sharing: Some("locked".into()),
                owner: MountOwner {
                    mode: Some("0700".into()),
                    uid: Some("1".into()),
                    gid: None,
                },
            })
        );
        // bind is the default type; src= and destination= are aliases.
        let bind = Mount::parse("src=app,destination=/app,from=build,rw").unwrap();
        assert_eq!(
            bind,
            Mount::Bind(BindMount {
                target: Some("/app".into()),
                source: Some("app".into()),
                from: Some("build".into()),
                readwrite: true,
            })
        );
        assert_eq!(bind.from(), Some("build"));
        let secret = Mount::parse("type=secret,id=tok,env=TOKEN,required=true").unwrap();
        assert!(
            matches!(&secret, Mount::Secret(s) if s.required && s.env.as_deref() == Some("TOKEN"))
        );
        assert_eq!(secret.target(), None);
        let ssh = Mount::parse("type=ssh,required=false").unwrap();
        assert!(matches!(
            ssh,
            Mount::Ssh(SshMount {
                required: false,
                ..
            })
        ));
        assert!(Mount::parse("type=volume").is_err());
    }
}
