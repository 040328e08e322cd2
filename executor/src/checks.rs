//! BuildKit's build checks around a build: findings are warnings; with
//! `# check=error=true` they fail the build, and `--check` reports them and
//! builds nothing. The stage-level rules learn base images' Env and
//! platform from their configs (no layer is read) and `.dockerignore`
//! from the context.

use crate::Error;
use kiln_dockerfile::checks::{check, check_plan, BaseImage, CheckConfig, Facts, Finding};
use kiln_dockerfile::{Ast, Plan, Platform};
use kiln_engine::BuildOptions;
use std::cell::RefCell;
use std::collections::HashMap;

/// Reports the syntax-level findings of a Dockerfile the plan refused, so
/// `--check` still says what it can.
pub fn report_unplannable(ast: &Ast) {
    let config = CheckConfig::from_ast(ast);
    for f in check(ast, &config) {
        tracing::warn!("{}", f.located(ast));
    }
}

/// Runs every check on `plan`; returns whether the build stops here.
pub fn run(plan: &Plan, opts: &BuildOptions, only: bool) -> Result<bool, Error> {
    let config = CheckConfig::from_ast(&plan.ast);
    let wants_bases = config.enabled("UndefinedVar") || config.enabled("InvalidBaseImagePlatform");
    let known: RefCell<HashMap<(String, String), Option<BaseImage>>> = RefCell::default();
    let base_image = |image: &str, platform: &Platform| {
        if !wants_bases {
            return None;
        }
        let key = (image.to_string(), platform.to_string());
        known
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| base_image(opts, image, platform))
            .clone()
    };
    let ignore = match config.enabled("CopyIgnoredFile") {
        true => kiln_engine::load_ignore(opts)
            .ok()
            .filter(|m| !m.is_empty() && !m.has_exceptions()),
        false => None,
    };
    let ignored = |p: &str| ignore.as_ref().is_some_and(|m| m.excluded(p));
    let facts = Facts {
        base_image: &base_image,
        ignored: ignore.as_ref().map(|_| &ignored as &dyn Fn(&str) -> bool),
        all_stages: only,
    };
    let findings = check_plan(plan, &config, &facts);
    conclude(&plan.ast, &findings, config.error || only)?;
    if only {
        tracing::info!("build checks: no findings");
    }
    Ok(only)
}

fn base_image(opts: &BuildOptions, image: &str, platform: &Platform) -> Option<BaseImage> {
    match kiln_engine::image_config(opts, image, platform) {
        Ok(c) => {
            let mut env = c.config.env.unwrap_or_default();
            // As the engine starts the stage: a PATH when the image has none.
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.push(format!("PATH={}", kiln_engine::DEFAULT_PATH));
            }
            Some(BaseImage {
                env,
                platform: Platform {
                    os: c.os,
                    arch: c.architecture,
                    variant: c.variant,
                },
            })
        }
        Err(e) => {
            tracing::warn!(
                "build checks: {image}: {e}; UndefinedVar is not checked in stages built on it"
            );
            None
        }
    }
}

/// Logs each finding; with `fail`, the first ends the build (exit code 3,
/// as for any Dockerfile problem).
fn conclude(ast: &Ast, findings: &[Finding], fail: bool) -> Result<(), Error> {
    for f in findings {
        tracing::warn!("{}", f.located(ast));
    }
    match findings.first().filter(|_| fail) {
        Some(first) => Err(Box::new(ast.error_at(
            first.line,
            1,
            format!(
                "{} build check finding(s), the first: {}: {}",
                findings.len(),
                first.rule,
                first.message
            ),
        ))),
        None => Ok(()),
    }
}
