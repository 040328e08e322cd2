//! The instructions that change only the image config (and ARG, which
//! changes what later steps see). Each adds an empty-layer history entry
//! with the text docker writes.

use super::StepCx;
use crate::error::BuildError;
use crate::metadata::{expose_ports, go_quoted_list, shell_wrap};
use crate::stage::StageState;
use kiln_dockerfile::instructions::{HealthcheckArgs, Instruction};
use kiln_dockerfile::Command;
use kiln_image::config::Empty;
use kiln_image::Healthcheck;
use std::collections::BTreeMap;

type Done = Result<(), BuildError>;

/// A step that changes only the config (and ARG, WORKDIR), its words
/// expanded once by `resolve`; `apply` changes the stage.
pub(crate) enum Change<'i> {
    /// Each name with the value it takes (`None`: keeps what it has).
    Arg(Vec<(String, Option<String>)>),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Maintainer(&'i str),
    Cmd(&'i Command),
    Entrypoint(&'i Command),
    Shell(&'i [String]),
    /// `port/proto` keys.
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    StopSignal(String),
    Healthcheck(&'i HealthcheckArgs),
    Onbuild(&'i str),
    /// The new working directory, absolute and clean.
    Workdir(String),
}

/// Expand `ins`'s words on the stage as it is before the step.
pub(crate) fn resolve<'i>(
    cx: &StepCx,
    state: &StageState,
    ins: &'i Instruction,
) -> Result<Change<'i>, BuildError> {
    let word = |w: &str| cx.expand(state, w);
    Ok(match ins {
        Instruction::From { .. } => return Err(cx.error("FROM is not allowed here")),
        Instruction::Arg(decls) => Change::Arg(arg_values(cx, state, decls)?),
        Instruction::Env(pairs) => Change::Env(expand_pairs(cx, state, pairs, "ENV")?),
        Instruction::Label(pairs) => Change::Label(expand_pairs(cx, state, pairs, "LABEL")?),
        Instruction::Maintainer(m) => Change::Maintainer(m),
        Instruction::Cmd(c) => Change::Cmd(c),
        Instruction::Entrypoint(c) => Change::Entrypoint(c),
        Instruction::Shell(s) => Change::Shell(s),
        Instruction::Expose(ports) => {
            let words = ports
                .iter()
                .map(|p| word(p))
                .collect::<Result<Vec<_>, _>>()?;
            Change::Expose(expose_ports(&words).map_err(|e| cx.error(e))?)
        }
        Instruction::Volume(vols) => {
            let vols = vols
                .iter()
                .map(|v| word(v))
                .collect::<Result<Vec<_>, _>>()?;
            if vols.iter().any(|v| v.trim().is_empty()) {
                return Err(cx.error("VOLUME specified can not be an empty string"));
            }
            Change::Volume(vols)
        }
        Instruction::User(u) => Change::User(word(u)?),
        Instruction::StopSignal(s) => Change::StopSignal(word(s)?),
        Instruction::Healthcheck(h) => Change::Healthcheck(h),
        Instruction::Onbuild(t) => Change::Onbuild(t),
        Instruction::Workdir(w) => Change::Workdir(super::workdir::resolve(state, &word(w)?)),
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {
            return Err(cx.error("a step that reads files is not a config change"))
        }
    })
}

/// Apply a resolved change to the stage.
pub(crate) fn apply(cx: &StepCx, state: &mut StageState, change: Change) -> Done {
    match change {
        Change::Arg(values) => arg(state, values),
        Change::Env(pairs) => env(cx, state, pairs),
        Change::Label(pairs) => label(cx, state, pairs),
        Change::Maintainer(m) => maintainer(cx, state, m),
        Change::Cmd(c) => cmd(cx, state, c),
        Change::Entrypoint(c) => entrypoint(cx, state, c),
        Change::Shell(s) => shell(cx, state, s),
        Change::Expose(ports) => expose(cx, state, ports),
        Change::Volume(vols) => volume(cx, state, vols),
        Change::User(u) => user(cx, state, u),
        Change::StopSignal(s) => stop_signal(cx, state, s),
        Change::Healthcheck(h) => healthcheck(cx, state, h),
        Change::Onbuild(t) => onbuild(state, t),
        Change::Workdir(path) => super::workdir::workdir(cx, state, path),
    }
}

/// Each declared name's value: the build arg given, else its default
/// (expanded, seeing the names declared before it in the same ARG), else
/// the global ARG's.
fn arg_values(
    cx: &StepCx,
    state: &StageState,
    decls: &[(String, Option<String>)],
) -> Result<Vec<(String, Option<String>)>, BuildError> {
    let plan = cx.build.plan;
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (k, default) in decls {
        let value = match plan.options.build_args.get(k) {
            Some(v) => Some(v.clone()),
            None => match default {
                Some(d) => {
                    let lookup = |name: &str| {
                        let env = state.config.config.env_get(name).map(String::from);
                        env.or_else(|| declared.get(name).cloned())
                            .or_else(|| state.args.get(name).cloned())
                    };
                    let expanded = cx.build.lex.process_word(d, &lookup);
                    Some(expanded.map_err(|e| cx.error(e))?)
                }
                None => plan.meta_args.get(k).cloned(),
            },
        };
        if let Some(v) = &value {
            declared.insert(k.clone(), v.clone());
        }
        out.push((k.clone(), value));
    }
    Ok(out)
}

fn arg(state: &mut StageState, values: Vec<(String, Option<String>)>) -> Done {
    for (k, value) in values {
        // A bare `ARG NAME` with no value anywhere keeps the value the stage
        // has (from its base stage or an earlier ARG), as BuildKit's
        // dispatchArg (dockerfile2llb/convert.go) adds nothing then.
        if let Some(v) = value {
            state.args.insert(k, v);
        }
    }
    Ok(())
}

/// Expand `KEY=VALUE` pairs; a blank name is an error naming `what`.
fn expand_pairs(
    cx: &StepCx,
    state: &StageState,
    pairs: &[(String, String)],
    what: &str,
) -> Result<Vec<(String, String)>, BuildError> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        let k = cx.expand(state, k)?;
        if k.is_empty() {
            return Err(cx.error(format!("{what} names can not be blank")));
        }
        out.push((k, cx.expand(state, v)?));
    }
    Ok(out)
}

fn shown(pairs: &[(String, String)]) -> String {
    let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    text.join(" ")
}

fn env(cx: &StepCx, state: &mut StageState, expanded: Vec<(String, String)>) -> Done {
    let text = shown(&expanded);
    for (k, v) in expanded {
        state.config.config.env_set(&k, &v);
    }
    cx.history(state, format!("ENV {text}"), true);
    Ok(())
}

fn label(cx: &StepCx, state: &mut StageState, expanded: Vec<(String, String)>) -> Done {
    let text = shown(&expanded);
    let labels = state.config.config.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(expanded);
    cx.history(state, format!("LABEL {text}"), true);
    Ok(())
}

fn maintainer(cx: &StepCx, state: &mut StageState, m: &str) -> Done {
    state.config.author = Some(m.to_string());
    cx.history(state, format!("MAINTAINER {m}"), true);
    Ok(())
}

fn cmd(cx: &StepCx, state: &mut StageState, c: &Command) -> Done {
    let cmd = shell_wrap(&state.config.config, c);
    cx.history(state, format!("CMD {}", go_quoted_list(&cmd)), true);
    state.config.config.cmd = Some(cmd);
    state.cmd_set = true;
    Ok(())
}

fn entrypoint(cx: &StepCx, state: &mut StageState, c: &Command) -> Done {
    let ep = shell_wrap(&state.config.config, c);
    cx.history(state, format!("ENTRYPOINT {}", go_quoted_list(&ep)), true);
    state.config.config.entrypoint = Some(ep);
    // A new ENTRYPOINT drops a CMD inherited from the base.
    if !state.cmd_set {
        state.config.config.cmd = None;
    }
    Ok(())
}

fn shell(cx: &StepCx, state: &mut StageState, s: &[String]) -> Done {
    state.config.config.shell = Some(s.to_vec());
    cx.history(state, format!("SHELL [{}]", s.join(" ")), true);
    Ok(())
}

fn expose(cx: &StepCx, state: &mut StageState, parsed: Vec<String>) -> Done {
    let map = state
        .config
        .config
        .exposed_ports
        .get_or_insert_with(BTreeMap::new);
    for p in &parsed {
        map.insert(p.clone(), Empty {});
    }
    let shown: Vec<String> = parsed.iter().map(|p| format!("{p}:{{}}")).collect();
    cx.history(state, format!("EXPOSE map[{}]", shown.join(" ")), true);
    Ok(())
}

fn volume(cx: &StepCx, state: &mut StageState, vols: Vec<String>) -> Done {
    let mut added = Vec::new();
    for v in vols {
        state
            .config
            .config
            .volumes
            .get_or_insert_with(BTreeMap::new)
            .insert(v.clone(), Empty {});
        added.push(v);
    }
    cx.history(state, format!("VOLUME [{}]", added.join(" ")), true);
    Ok(())
}

fn user(cx: &StepCx, state: &mut StageState, u: String) -> Done {
    state.config.config.user = u.clone();
    cx.history(state, format!("USER {u}"), true);
    Ok(())
}

fn stop_signal(cx: &StepCx, state: &mut StageState, s: String) -> Done {
    state.config.config.stop_signal = s.clone();
    cx.history(state, format!("STOPSIGNAL {s}"), true);
    Ok(())
}

fn healthcheck(cx: &StepCx, state: &mut StageState, h: &HealthcheckArgs) -> Done {
    cx.history(
        state,
        format!("HEALTHCHECK {}", go_quoted_list(&h.test)),
        true,
    );
    state.config.config.healthcheck = Some(Healthcheck {
        test: h.test.clone(),
        interval: h.interval_ns,
        timeout: h.timeout_ns,
        start_period: h.start_period_ns,
        start_interval: h.start_interval_ns,
        retries: h.retries,
    });
    Ok(())
}

fn onbuild(state: &mut StageState, trigger: &str) -> Done {
    state
        .config
        .config
        .on_build
        .get_or_insert_with(Vec::new)
        .push(trigger.to_string());
    Ok(())
}
