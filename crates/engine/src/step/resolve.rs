//! A step in two phases, as BuildKit's frontend turns an instruction into
//! an op once: `resolve` reads everything the step depends on (its
//! sources, with their content digests, the stage or image it reads, what
//! its mounts show) and says how the step goes through the cache; `apply`
//! does the work with what was resolved, reading nothing again. The cache
//! key is made from a `Resolved` in one place (`cached::key_parts`), so a
//! step's key cannot leave out what the step reads: the inputs are what
//! the step itself resolved.

use super::inputs::Inputs;
use super::{config, copy, run, StepCx};
use crate::error::BuildError;
use crate::stage::StageState;
use kiln_dockerfile::instructions::Instruction;

/// Which of `--cache-run-layers` / `--cache-copy-layers` a step's layer
/// is cached under (`None`: the step is keyed but never looked up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerClass {
    Run,
    Copy,
    None,
}

/// How a step goes through the cache and the platforms of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// RUN: it runs a command (the report counts these).
    pub runs: bool,
    /// Every build arg in scope is an input (a RUN's environment); else
    /// only those its words name.
    pub sees_all_args: bool,
    pub layers: LayerClass,
    /// Builds of other platforms with the same key take its result.
    pub shared_across_platforms: bool,
}

/// The work left once resolved.
pub(crate) enum Work<'i> {
    /// RUN, its mounts' words expanded.
    Run(
        &'i kiln_dockerfile::instructions::RunArgs,
        Vec<kiln_dockerfile::instructions::Mount>,
    ),
    Copy(copy::ResolvedCopy<'i>),
    /// Steps that change the config (and ARG, WORKDIR), their words
    /// expanded.
    Config(config::Change<'i>),
}

pub(crate) struct Resolved<'i> {
    pub rules: Rules,
    pub inputs: Inputs,
    pub work: Work<'i>,
}

/// Resolve `ins` on the stage. `keyed`: the key will be made, so inputs
/// only the key needs (content digests) are read too.
pub(crate) fn resolve<'i>(
    cx: &StepCx,
    state: &StageState,
    ins: &'i Instruction,
    keyed: bool,
) -> Result<Resolved<'i>, BuildError> {
    Ok(match ins {
        Instruction::Run(r) => {
            let mounts = super::mounts::expanded(cx, state, &r.mounts)?;
            Resolved {
                rules: Rules {
                    runs: true,
                    sees_all_args: true,
                    layers: LayerClass::Run,
                    shared_across_platforms: true,
                },
                inputs: match keyed {
                    true => super::mounts::inputs(cx, &mounts)?,
                    false => Inputs::default(),
                },
                work: Work::Run(r, mounts),
            }
        }
        Instruction::Copy(c) | Instruction::Add(c) => {
            let is_add = matches!(ins, Instruction::Add(_));
            let (resolved, inputs) = copy::resolve(cx, state, c, is_add, keyed)?;
            Resolved {
                rules: Rules {
                    runs: false,
                    sees_all_args: false,
                    layers: LayerClass::Copy,
                    shared_across_platforms: true,
                },
                inputs,
                work: Work::Copy(resolved),
            }
        }
        _ => Resolved {
            rules: Rules {
                runs: false,
                sees_all_args: false,
                layers: LayerClass::None,
                shared_across_platforms: false,
            },
            inputs: Inputs::default(),
            work: Work::Config(config::resolve(cx, state, ins)?),
        },
    })
}

/// Do the work `resolved` describes.
pub(crate) fn apply(
    cx: &StepCx,
    state: &mut StageState,
    resolved: Resolved,
) -> Result<(), BuildError> {
    prepare(cx, state, &resolved.work)?;
    match resolved.work {
        Work::Run(r, mounts) => run::run(cx, state, r, &mounts),
        Work::Copy(c) => copy::apply(cx, state, c),
        Work::Config(change) => config::apply(cx, state, change),
    }
}

/// Steps that read or change files need the tree: base layers and cache
/// hits are fetched and applied now, not before. COPY, ADD and WORKDIR
/// read only what the files are, unless a user or group name must be
/// looked up in the image's files.
fn prepare(cx: &StepCx, state: &mut StageState, work: &Work) -> Result<(), BuildError> {
    let names = |spec: Option<&String>| spec.is_some_and(|s| crate::users::names_someone(s));
    let layers = cx.build.layers();
    let prepared = match work {
        Work::Run(..) => state.force(&layers),
        Work::Copy(c) if names(c.chown.as_ref()) => state.force(&layers),
        Work::Copy(_) => state.describe(&layers),
        Work::Config(config::Change::Workdir(_)) if names(Some(&state.config.config.user)) => {
            state.force(&layers)
        }
        Work::Config(config::Change::Workdir(_)) => state.describe(&layers),
        Work::Config(_) => Ok(()),
    };
    prepared.map_err(|e| cx.error(e))
}
