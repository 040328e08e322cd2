//! The checks that need the plan and what the build knows of base images
//! and the context (BuildKit runs them while converting the Dockerfile:
//! dockerfile2llb/convert.go `reportUnmatchedVariables`,
//! `validateCopySourcePath`, `validateBaseImagePlatform`,
//! `reportRedundantTargetPlatform`, `reportConstPlatformDisallowed`).

use super::{suggest, Facts, Report};
use crate::instructions::{CopyArgs, Instruction};
use crate::plan::{Plan, Platform, Stage, StageBase};
use crate::shell::Lex;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// The variables a stage's instructions can see, by name.
#[derive(Clone, Default)]
struct Scope {
    env: BTreeMap<String, String>,
    /// Declared ARGs, with their values when they have one.
    args: BTreeMap<String, Option<String>>,
}

impl Scope {
    fn from_env(entries: &[String]) -> Scope {
        let env = entries
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Scope {
            env,
            args: BTreeMap::new(),
        }
    }

    fn get(&self, k: &str) -> Option<String> {
        self.env
            .get(k)
            .cloned()
            .or_else(|| self.args.get(k).cloned().flatten())
    }
}

/// Expands words as the engine will, reporting UndefinedVar for names
/// neither set nor declared as ARGs.
struct Expander<'a, 'r> {
    lex: Lex,
    node: &'a crate::parser::Node,
    report: &'a mut Report<'r>,
}

impl Expander<'_, '_> {
    fn expand(&mut self, scope: &Scope, word: &str) -> Option<String> {
        let unmatched = RefCell::new(BTreeSet::new());
        let lookup = |k: &str| {
            let v = scope.get(k);
            if v.is_none() && !scope.args.contains_key(k) {
                unmatched.borrow_mut().insert(k.to_string());
            }
            v
        };
        let result = self.lex.process_word(word, &lookup).ok();
        let known: Vec<&str> = scope.env.keys().map(String::as_str).collect();
        for name in unmatched.into_inner() {
            let hint = suggest(&name, &known)
                .map(|s| format!(" (did you mean ${s}?)"))
                .unwrap_or_default();
            self.report.add(
                "UndefinedVar",
                self.node,
                format!("Usage of undefined variable '${name}'{hint}"),
            );
        }
        result
    }
}

pub(super) fn check(plan: &Plan, facts: &Facts, report: &mut Report) {
    let wanted: BTreeSet<usize> = match facts.all_stages {
        true => (0..plan.stages.len()).collect(),
        false => plan.order.iter().copied().collect(),
    };
    // The scope each stage ends with (None: its base image is unknown).
    let mut ends: Vec<Option<Scope>> = Vec::new();
    for stage in &plan.stages {
        let platform = stage_platform(plan, stage);
        let start = match &stage.base {
            // BuildKit gives scratch a PATH.
            StageBase::Scratch => Some(Scope::from_env(&["PATH=".to_string()])),
            StageBase::Stage(i) => ends.get(*i).cloned().flatten(),
            StageBase::Image(image) => {
                let base = (facts.base_image)(image, &platform);
                if let (Some(b), true) = (&base, wanted.contains(&stage.index)) {
                    base_platform(stage, image, &platform, &b.platform, report);
                }
                base.map(|b| Scope::from_env(&b.env))
            }
        };
        if wanted.contains(&stage.index) {
            platform_flag(plan, stage, report);
        }
        let end = start.map(|scope| {
            let mut sink = Report::discard();
            let report = match wanted.contains(&stage.index) {
                true => &mut *report,
                false => &mut sink,
            };
            walk(plan, stage, scope, facts, report)
        });
        ends.push(end);
    }
}

fn stage_platform(plan: &Plan, stage: &Stage) -> Platform {
    stage
        .platform
        .as_deref()
        .and_then(|p| Platform::parse(p).ok())
        .unwrap_or_else(|| plan.options.target_platform.clone())
}

/// Runs the stage's instructions over its scope; returns the final scope.
fn walk(plan: &Plan, stage: &Stage, mut scope: Scope, facts: &Facts, report: &mut Report) -> Scope {
    for step in &stage.steps {
        let mut x = Expander {
            lex: Lex::new(plan.ast.escape),
            node: &step.node,
            report: &mut *report,
        };
        match &step.instruction {
            Instruction::Arg(decls) => {
                for (k, default) in decls {
                    let value = match (plan.options.build_args.get(k), default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => x.expand(&scope, d),
                        (None, None) => None,
                    };
                    scope.args.insert(k.clone(), value);
                }
            }
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    let k = x.expand(&scope, k).unwrap_or_default();
                    let v = x.expand(&scope, v).unwrap_or_default();
                    scope.env.insert(k, v);
                }
            }
            Instruction::Label(pairs) => {
                for (k, v) in pairs {
                    x.expand(&scope, k);
                    x.expand(&scope, v);
                }
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let add = matches!(step.instruction, Instruction::Add(_));
                copy(&mut x, &scope, c, add, facts);
            }
            Instruction::Workdir(w) | Instruction::User(w) | Instruction::StopSignal(w) => {
                x.expand(&scope, w);
            }
            Instruction::Volume(words) | Instruction::Expose(words) => {
                for w in words {
                    x.expand(&scope, w);
                }
            }
            // RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and ONBUILD are not
            // expanded by the builder: the shell sees their variables.
            _ => {}
        }
    }
    scope
}

fn copy(x: &mut Expander, scope: &Scope, c: &CopyArgs, add: bool, facts: &Facts) {
    for word in [&c.chown, &c.chmod].into_iter().flatten() {
        x.expand(scope, word);
    }
    x.expand(scope, &c.dest);
    for src in &c.sources {
        let Some(src) = x.expand(scope, src) else {
            continue;
        };
        let remote = src.contains("://") || src.starts_with("git@");
        if let (Some(ignored), None, false) = (facts.ignored, &c.from, remote) {
            let cleaned = clean(&src);
            if ignored(&cleaned) {
                let cmd = if add { "Add" } else { "Copy" };
                x.report.add(
                    "CopyIgnoredFile",
                    x.node,
                    format!(
                        "Attempting to {cmd} file {cleaned:?} that is excluded by .dockerignore"
                    ),
                );
            }
        }
    }
}

/// InvalidBaseImagePlatform: the image's config is for another platform.
fn base_platform(
    stage: &Stage,
    image: &str,
    expected: &Platform,
    actual: &Platform,
    report: &mut Report,
) {
    if expected.os != actual.os || expected.arch != actual.arch {
        report.add(
            "InvalidBaseImagePlatform",
            &stage.from,
            format!(
                "Base image {image} was pulled with platform {:?}, expected {:?} for current build",
                actual.to_string(),
                expected.to_string()
            ),
        );
    }
}

/// RedundantTargetPlatform and FromPlatformFlagConstDisallowed.
fn platform_flag(plan: &Plan, stage: &Stage, report: &mut Report) {
    let Ok(Instruction::From {
        platform: Some(raw),
        ..
    }) = crate::instructions::from_node(&stage.from)
    else {
        return;
    };
    // Names looked up: found, and not found.
    let looked_up = RefCell::new((BTreeSet::new(), BTreeSet::new()));
    let lookup = |k: &str| {
        let v = plan.meta_args.get(k).cloned();
        let mut sets = looked_up.borrow_mut();
        match v {
            Some(_) => sets.0.insert(k.to_string()),
            None => sets.1.insert(k.to_string()),
        };
        v
    };
    let Ok(result) = Lex::new(plan.ast.escape).process_word(&raw, &lookup) else {
        return;
    };
    let (found, missing) = looked_up.into_inner();
    let target = plan.meta_args.get("TARGETPLATFORM");
    if found.len() == 1
        && missing.is_empty()
        && found.contains("TARGETPLATFORM")
        && target == Some(&result)
    {
        report.add(
            "RedundantTargetPlatform",
            &stage.from,
            format!(
                "Setting platform to predefined {raw} in FROM is redundant as this is the default behavior"
            ),
        );
    }
    if !found.is_empty() || !missing.is_empty() {
        return;
    }
    let Ok(p) = Platform::parse(&result) else {
        return;
    };
    let name = stage.name.as_deref().unwrap_or("");
    if !name.contains(p.os.as_str()) && !name.contains(p.arch.as_str()) {
        report.add(
            "FromPlatformFlagConstDisallowed",
            &stage.from,
            format!("FROM --platform flag should not use constant value {result:?}"),
        );
    }
}

/// A context path as `.dockerignore` patterns see it: lexically cleaned,
/// relative to the context.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}
