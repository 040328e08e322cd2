//! Typed instructions made from parser nodes. Flags are validated here;
//! words stay unexpanded (expansion needs the environment of each step).

use crate::flags::Flags;
use crate::invalid::Invalid;
use crate::parser::{Heredoc, Node};
use crate::run_args::run_args;
pub use crate::run_args::{
    BindMount, CacheMount, Mount, MountKind, MountOwner, Network, RunArgs, SecretMount, Security,
    SshMount, TmpfsMount,
};
use serde::Serialize;

/// A command for RUN, CMD, ENTRYPOINT or HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    /// Shell form: run through SHELL.
    Shell(String),
    /// Exec (JSON) form.
    Exec(Vec<String>),
}

/// COPY and ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyArgs {
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    /// `ADD --unpack`: extract archives (default: local ones only).
    pub unpack: Option<bool>,
    /// Heredoc sources (`COPY <<EOF /dst`), by name.
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckArgs {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", cmd]` as docker stores it.
    pub test: Vec<String>,
    pub interval_ns: i64,
    pub timeout_ns: i64,
    pub start_period_ns: i64,
    pub start_interval_ns: i64,
    pub retries: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run(RunArgs),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Maintainer(String),
    Expose(Vec<String>),
    Add(CopyArgs),
    Copy(CopyArgs),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    /// Declared names with optional defaults.
    Arg(Vec<(String, Option<String>)>),
    /// The trigger's text as stored in the image config.
    Onbuild(String),
    StopSignal(String),
    Healthcheck(HealthcheckArgs),
}

impl Instruction {
    /// Upper-case keyword, for messages and history.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From { .. } => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
        }
    }
}

/// Every instruction keyword, lower case.
pub const KEYWORDS: &[&str] = &[
    "from",
    "run",
    "cmd",
    "entrypoint",
    "shell",
    "env",
    "label",
    "maintainer",
    "expose",
    "add",
    "copy",
    "volume",
    "user",
    "workdir",
    "arg",
    "onbuild",
    "stopsignal",
    "healthcheck",
];

fn command_of(node: &Node) -> Command {
    if node.json {
        Command::Exec(node.args.clone())
    } else {
        Command::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

fn need_args(node: &Node, min: usize) -> Result<(), Invalid> {
    if node.args.len() < min {
        let kw = node.keyword.to_uppercase();
        return Err(match min {
            1 => Invalid::NeedsArgument(kw),
            _ => Invalid::NeedsArguments {
                instruction: kw,
                min,
                given: node.args.len(),
            },
        });
    }
    Ok(())
}

fn pairs(args: &[String]) -> Vec<(String, String)> {
    args.chunks(3)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect()
}

/// Parses Go-style durations: `1h2m3s`, `500ms`, `0s`, `10us`.
pub fn parse_duration(s: &str) -> Result<i64, Invalid> {
    if s == "0" {
        return Ok(0);
    }
    let bad = || Invalid::Duration(s.to_string());
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

fn healthcheck(node: &Node) -> Result<HealthcheckArgs, Invalid> {
    let flags = Flags::parse(
        node,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    )?;
    let typ = node
        .args
        .first()
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    let test = match typ.as_str() {
        "NONE" => {
            if node.args.len() > 1 {
                return Err(Invalid::HealthcheckNoneArguments);
            }
            if !node.flags.is_empty() {
                return Err(Invalid::HealthcheckNoneFlags);
            }
            vec!["NONE".to_string()]
        }
        "CMD" => {
            if node.args.len() < 2 {
                return Err(Invalid::HealthcheckNoCommand);
            }
            if node.json {
                let mut t = vec!["CMD".to_string()];
                t.extend(node.args[1..].iter().cloned());
                t
            } else {
                vec!["CMD-SHELL".to_string(), node.args[1].clone()]
            }
        }
        "" => return Err(Invalid::HealthcheckNoType),
        other => return Err(Invalid::HealthcheckType(other.to_string())),
    };
    let dur = |name: &str| -> Result<i64, Invalid> {
        match flags.string(name)? {
            None => Ok(0),
            Some(v) => {
                let d = parse_duration(&v).map_err(|_| Invalid::DurationFlag {
                    flag: name.to_string(),
                    value: v.clone(),
                })?;
                if d != 0 && d < 1_000_000 {
                    return Err(Invalid::IntervalTooShort(name.to_string()));
                }
                Ok(d)
            }
        }
    };
    let retries = match flags.string("retries")? {
        None => 0,
        Some(v) => {
            let r: i64 = v.parse().map_err(|_| Invalid::Retries(v.clone()))?;
            if r < 0 {
                return Err(Invalid::NegativeRetries);
            }
            r
        }
    };
    Ok(HealthcheckArgs {
        test,
        interval_ns: dur("interval")?,
        timeout_ns: dur("timeout")?,
        start_period_ns: dur("start-period")?,
        start_interval_ns: dur("start-interval")?,
        retries,
    })
}

fn copy_args(node: &Node, is_add: bool) -> Result<CopyArgs, Invalid> {
    let allowed: &[&str] = if is_add {
        &[
            "chown",
            "chmod",
            "link",
            "exclude",
            "checksum",
            "keep-git-dir",
            "parents",
            "unpack",
        ]
    } else {
        &["from", "chown", "chmod", "link", "parents", "exclude"]
    };
    let flags = Flags::parse(node, allowed)?;
    need_args(node, 2)?;
    let n = node.args.len();
    let heredocs: Vec<Heredoc> = node.heredocs.clone();
    Ok(CopyArgs {
        sources: node.args[..n - 1].to_vec(),
        dest: node.args[n - 1].clone(),
        from: flags.string("from")?,
        chown: flags.string("chown")?,
        chmod: flags.string("chmod")?,
        link: flags.bool("link")?,
        parents: flags.bool("parents")?,
        excludes: flags.strings("exclude")?,
        checksum: flags.string("checksum")?,
        keep_git_dir: flags.bool("keep-git-dir")?,
        unpack: match flags.string_or_flag("unpack") {
            None => None,
            Some(_) => Some(flags.bool("unpack")?),
        },
        heredocs,
    })
}

/// Makes a typed instruction from a node; the error is a message without
/// location (the caller adds file and line).
pub fn from_node(node: &Node) -> Result<Instruction, Invalid> {
    let kw = node.keyword.as_str();
    let no_flags = |n: &Node| Flags::parse(n, &[]).map(|_| ());
    Ok(match kw {
        "from" => {
            let flags = Flags::parse(node, &["platform"])?;
            let a = &node.args;
            let name = match a.len() {
                1 => None,
                3 if a[1].eq_ignore_ascii_case("as") => Some(a[2].to_ascii_lowercase()),
                0 => return Err(Invalid::NeedsArgument("FROM".into())),
                _ => return Err(Invalid::FromOneOrThree),
            };
            if let Some(n) = &name {
                let ok = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                if !ok {
                    return Err(Invalid::StageName(n.to_string()));
                }
            }
            Instruction::From {
                image: a[0].clone(),
                name,
                platform: flags.string("platform")?,
            }
        }
        "run" => {
            need_args(node, if node.json { 0 } else { 1 })?;
            Instruction::Run(run_args(node, command_of(node))?)
        }
        "cmd" | "entrypoint" => {
            no_flags(node)?;
            let c = command_of(node);
            if kw == "cmd" {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        "shell" => {
            no_flags(node)?;
            if !node.json {
                return Err(Invalid::ShellNotJson);
            }
            need_args(node, 1)?;
            Instruction::Shell(node.args.clone())
        }
        "env" | "label" => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(Invalid::NeedsArgument(kw.to_uppercase()));
            }
            let p = pairs(&node.args);
            if kw == "env" {
                Instruction::Env(p)
            } else {
                Instruction::Label(p)
            }
        }
        "maintainer" => {
            no_flags(node)?;
            need_args(node, 1)?;
            Instruction::Maintainer(node.args[0].clone())
        }
        "expose" => {
            no_flags(node)?;
            need_args(node, 1)?;
            Instruction::Expose(node.args.clone())
        }
        "add" => Instruction::Add(copy_args(node, true)?),
        "copy" => Instruction::Copy(copy_args(node, false)?),
        "volume" => {
            no_flags(node)?;
            need_args(node, 1)?;
            if node.args.iter().any(|v| v.trim().is_empty()) {
                return Err(Invalid::EmptyVolume);
            }
            Instruction::Volume(node.args.clone())
        }
        "user" | "workdir" | "stopsignal" => {
            no_flags(node)?;
            need_args(node, 1)?;
            let v = node.args[0].clone();
            match kw {
                "user" => Instruction::User(v),
                "workdir" => Instruction::Workdir(v),
                _ => Instruction::StopSignal(v),
            }
        }
        "arg" => {
            no_flags(node)?;
            need_args(node, 1)?;
            let mut decls = Vec::new();
            for w in &node.args {
                let (k, v) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w.clone(), None),
                };
                if k.is_empty() {
                    return Err(Invalid::BlankArg(w.clone()));
                }
                decls.push((k, v));
            }
            Instruction::Arg(decls)
        }
        "onbuild" => {
            no_flags(node)?;
            let Some(sub) = &node.sub else {
                return Err(Invalid::NeedsArgument("ONBUILD".into()));
            };
            match sub.keyword.as_str() {
                "onbuild" => return Err(Invalid::OnbuildChain),
                "from" | "maintainer" => {
                    return Err(Invalid::OnbuildTrigger(sub.keyword.to_uppercase()))
                }
                _ => {}
            }
            from_node(sub)?;
            let text = node.original.trim_start();
            let text = text.get("onbuild".len()..).unwrap_or("").trim_start();
            Instruction::Onbuild(text.to_string())
        }
        "healthcheck" => Instruction::Healthcheck(healthcheck(node)?),
        other => return Err(Invalid::UnknownInstruction(other.to_uppercase())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Result<Instruction, String> {
        let ast = crate::parse("D", src).map_err(|e| e.to_string())?;
        from_node(&ast.nodes[0]).map_err(|e| e.to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn copy_flags() {
        let i = one("COPY --from=build --chown=1:2 --chmod=644 a b /d/\n").unwrap();
        let Instruction::Copy(c) = i else { panic!() };
        assert_eq!(c.sources, vec!["a", "b"]);
        assert_eq!(c.dest, "/d/");
        assert_eq!(c.from.as_deref(), Some("build"));
        assert!(one("COPY --bogus=1 a b\n")
            .unwrap_err()
            .contains("unknown flag"));
        assert!(one("ADD --from=x a b\n")
            .unwrap_err()
            .contains("unknown flag"));
        assert!(one("COPY onlyone\n").is_err());
    }

    #[test]
    fn healthcheck_forms() {
        let Instruction::Healthcheck(h) = one("HEALTHCHECK --interval=5s CMD curl x\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(h.test, vec!["CMD-SHELL", "curl x"]);
        assert_eq!(h.interval_ns, 5_000_000_000);
        assert!(one("HEALTHCHECK CONNECT TCP 7000\n").is_err());
    }

    #[test]
    fn onbuild_text_and_rules() {
        assert_eq!(
            one("ONBUILD RUN echo hi\n").unwrap(),
            Instruction::Onbuild("RUN echo hi".into())
        );
        assert!(one("ONBUILD ONBUILD RUN x\n").is_err());
        assert!(one("ONBUILD FROM x\n").is_err());
    }

    #[test]
    fn unknown_instruction() {
        assert!(one("FOO bar\n")
            .unwrap_err()
            .contains("unknown instruction: FOO"));
    }
}
