//! RUN's flags as types: `--mount` (BuildKit's
//! instructions/commands_runmount.go), `--network`, `--security`.

use crate::flags::Flags;
use crate::instructions::Command;
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

/// One `RUN --mount=...`: its type and its other `key=value` options as
/// written (words unexpanded; BuildKit's `instructions/commands_runmount.go`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub kind: MountKind,
    pub options: Vec<(String, String)>,
}

impl Mount {
    pub fn parse(spec: &str) -> Result<Mount, String> {
        let mut kind = MountKind::Bind;
        let mut options = Vec::new();
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
                    other => return Err(format!("unsupported mount type {other:?}")),
                };
            } else {
                options.push((k, v.to_string()));
            }
        }
        Ok(Mount { kind, options })
    }

    /// The value of option `key` (`from`, `target`, ...).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// RUN's arguments: its command and typed flags.
pub(crate) fn run_args(node: &Node, command: Command) -> Result<RunArgs, String> {
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
            Some(other) => {
                return Err(format!(
                    "RUN --network={other}: expected default, none or host"
                ))
            }
        },
        security: match flags.string("security")?.as_deref() {
            None | Some("sandbox") => Security::Sandbox,
            Some("insecure") => Security::Insecure,
            Some(other) => {
                return Err(format!(
                    "RUN --security={other}: expected sandbox or insecure"
                ))
            }
        },
        heredocs: node.heredocs.clone(),
    })
}
