//! The instructions that change only the image config (and ARG, which
//! changes what later steps see). Each adds an empty-layer history entry
//! with the text docker writes.

use super::StepCx;
use crate::error::BuildError;
use crate::metadata::{expose_ports, go_quoted_list, shell_wrap};
use crate::stage::StageState;
use kiln_dockerfile::instructions::HealthcheckArgs;
use kiln_dockerfile::Command;
use kiln_image::config::Empty;
use kiln_image::Healthcheck;
use std::collections::BTreeMap;

type Done = Result<(), BuildError>;

pub fn arg(cx: &StepCx, state: &mut StageState, decls: &[(String, Option<String>)]) -> Done {
    let plan = cx.build.plan;
    for (k, default) in decls {
        let value = match plan.options.build_args.get(k) {
            Some(v) => Some(v.clone()),
            None => match default {
                Some(d) => Some(cx.expand(state, d)?),
                None => plan.meta_args.get(k).cloned(),
            },
        };
        // A bare `ARG NAME` with no value anywhere keeps the value the stage
        // has (from its base stage or an earlier ARG), as BuildKit's
        // dispatchArg (dockerfile2llb/convert.go) adds nothing then.
        if let Some(v) = value {
            state.args.insert(k.clone(), v);
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

pub fn env(cx: &StepCx, state: &mut StageState, pairs: &[(String, String)]) -> Done {
    let expanded = expand_pairs(cx, state, pairs, "ENV")?;
    let text = shown(&expanded);
    for (k, v) in expanded {
        state.config.config.env_set(&k, &v);
    }
    cx.history(state, format!("ENV {text}"), true);
    Ok(())
}

pub fn label(cx: &StepCx, state: &mut StageState, pairs: &[(String, String)]) -> Done {
    let expanded = expand_pairs(cx, state, pairs, "LABEL")?;
    let text = shown(&expanded);
    let labels = state.config.config.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(expanded);
    cx.history(state, format!("LABEL {text}"), true);
    Ok(())
}

pub fn maintainer(cx: &StepCx, state: &mut StageState, m: &str) -> Done {
    state.config.author = Some(m.to_string());
    cx.history(state, format!("MAINTAINER {m}"), true);
    Ok(())
}

pub fn cmd(cx: &StepCx, state: &mut StageState, c: &Command) -> Done {
    let cmd = shell_wrap(&state.config.config, c);
    cx.history(state, format!("CMD {}", go_quoted_list(&cmd)), true);
    state.config.config.cmd = Some(cmd);
    state.cmd_set = true;
    Ok(())
}

pub fn entrypoint(cx: &StepCx, state: &mut StageState, c: &Command) -> Done {
    let ep = shell_wrap(&state.config.config, c);
    cx.history(state, format!("ENTRYPOINT {}", go_quoted_list(&ep)), true);
    state.config.config.entrypoint = Some(ep);
    // A new ENTRYPOINT drops a CMD inherited from the base.
    if !state.cmd_set {
        state.config.config.cmd = None;
    }
    Ok(())
}

pub fn shell(cx: &StepCx, state: &mut StageState, s: &[String]) -> Done {
    state.config.config.shell = Some(s.to_vec());
    cx.history(state, format!("SHELL [{}]", s.join(" ")), true);
    Ok(())
}

pub fn expose(cx: &StepCx, state: &mut StageState, ports: &[String]) -> Done {
    let words = ports
        .iter()
        .map(|p| cx.expand(state, p))
        .collect::<Result<Vec<_>, _>>()?;
    let parsed = expose_ports(&words).map_err(|e| cx.error(e))?;
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

pub fn volume(cx: &StepCx, state: &mut StageState, vols: &[String]) -> Done {
    let mut added = Vec::new();
    for v in vols {
        let v = cx.expand(state, v)?;
        if v.trim().is_empty() {
            return Err(cx.error("VOLUME specified can not be an empty string"));
        }
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

pub fn user(cx: &StepCx, state: &mut StageState, u: &str) -> Done {
    let u = cx.expand(state, u)?;
    state.config.config.user = u.clone();
    cx.history(state, format!("USER {u}"), true);
    Ok(())
}

pub fn stop_signal(cx: &StepCx, state: &mut StageState, s: &str) -> Done {
    let s = cx.expand(state, s)?;
    state.config.config.stop_signal = s.clone();
    cx.history(state, format!("STOPSIGNAL {s}"), true);
    Ok(())
}

pub fn healthcheck(cx: &StepCx, state: &mut StageState, h: &HealthcheckArgs) -> Done {
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

pub fn onbuild(state: &mut StageState, trigger: &str) -> Done {
    state
        .config
        .config
        .on_build
        .get_or_insert_with(Vec::new)
        .push(trigger.to_string());
    Ok(())
}
