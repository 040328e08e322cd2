//! BuildKit's Dockerfile build checks (frontend/dockerfile/linter): each
//! finding names its rule and where it is. The
//! `# check=skip=RULE,...;error=true;experimental=RULE,...` directive skips
//! rules, makes findings fail the build, or turns experimental rules on,
//! as in BuildKit. `syntax` holds the rules that need only the syntax
//! tree, `stages` those that need the plan, base images and the context.

mod stages;
mod syntax;

use crate::parser::{Ast, Node};
use crate::plan::{Plan, Platform};
use crate::ParseError;
use std::collections::BTreeSet;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub message: String,
    pub line: usize,
}

/// BuildKit's experimental rules: they run only when `experimental=` names
/// them (or says `all`).
const EXPERIMENTAL: &[&str] = &["CopyIgnoredFile", "InvalidDefinitionDescription"];

/// What `# check=` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip: BTreeSet<String>,
    pub skip_all: bool,
    pub error: bool,
    pub experimental: BTreeSet<String>,
    pub experimental_all: bool,
}

impl CheckConfig {
    pub fn from_ast(ast: &Ast) -> CheckConfig {
        let mut c = CheckConfig::default();
        for (name, value) in &ast.directives {
            if name != "check" {
                continue;
            }
            for part in value.split(';') {
                let (k, v) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
                let list = || v.split(',').map(|r| r.trim().to_string());
                match k {
                    "skip" if v == "all" => c.skip_all = true,
                    "skip" => c.skip.extend(list()),
                    "error" => c.error = v == "true",
                    "experimental" if v == "all" => c.experimental_all = true,
                    "experimental" => c.experimental.extend(list()),
                    _ => {}
                }
            }
        }
        c
    }

    /// Whether `rule` runs.
    pub fn enabled(&self, rule: &str) -> bool {
        if self.skip_all || self.skip.contains(rule) {
            return false;
        }
        !EXPERIMENTAL.contains(&rule) || self.experimental_all || self.experimental.contains(rule)
    }
}

impl Finding {
    /// `file:line:column: Rule: message` and the line, as errors show.
    pub fn located(&self, ast: &Ast) -> ParseError {
        ast.error_at(self.line, 1, format!("{}: {}", self.rule, self.message))
    }
}

/// Findings as the rules make them, less the rules the config turns off.
pub(crate) struct Report<'c> {
    config: Option<&'c CheckConfig>,
    findings: Vec<Finding>,
}

impl<'c> Report<'c> {
    fn new(config: &'c CheckConfig) -> Report<'c> {
        Report {
            config: Some(config),
            findings: Vec::new(),
        }
    }

    /// A report that keeps nothing (for stages walked only for their scope).
    fn discard() -> Report<'c> {
        Report {
            config: None,
            findings: Vec::new(),
        }
    }

    fn add(&mut self, rule: &'static str, node: &Node, message: String) {
        if self.config.is_some_and(|c| c.enabled(rule)) {
            self.findings.push(Finding {
                rule,
                message,
                line: node.start_line,
            });
        }
    }

    /// In file order; a rule reports a line once per message.
    fn finish(mut self) -> Vec<Finding> {
        self.findings.sort_by_key(|f| f.line);
        self.findings.dedup();
        self.findings
    }
}

/// What the build knows about a base image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The config's `Env` (`KEY=value`).
    pub env: Vec<String>,
    pub platform: Platform,
}

/// What the stage-level rules need from outside the Dockerfile.
pub struct Facts<'a> {
    /// A base image's config, when it can be had (none: UndefinedVar
    /// skips stages built on it).
    pub base_image: &'a dyn Fn(&str, &Platform) -> Option<BaseImage>,
    /// Whether `.dockerignore` excludes a context path (none: there is no
    /// `.dockerignore`, or it has `!` exceptions, which BuildKit does not
    /// judge statically).
    pub ignored: Option<&'a dyn Fn(&str) -> bool>,
    /// Every stage, not only those the target needs (`--check`).
    pub all_stages: bool,
}

/// The findings that need only the syntax tree.
pub fn check(ast: &Ast, config: &CheckConfig) -> Vec<Finding> {
    let mut report = Report::new(config);
    syntax::check(ast, &mut report);
    report.finish()
}

/// Every finding: the syntax tree's and the stages'.
pub fn check_plan(plan: &Plan, config: &CheckConfig, facts: &Facts) -> Vec<Finding> {
    let mut report = Report::new(config);
    syntax::check(&plan.ast, &mut report);
    stages::check(plan, facts, &mut report);
    report.finish()
}

/// BuildKit's suggestion (util/suggest): the option nearest to `name` by
/// edit distance, if fewer than 3 edits away.
fn suggest<'o>(name: &str, options: &[&'o str]) -> Option<&'o str> {
    let mut best = None;
    let mut min = 3;
    for &o in options {
        if o == name {
            return None;
        }
        let d = levenshtein(name, o);
        if d < min {
            min = d;
            best = Some(o);
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanOptions;

    fn rules(src: &str) -> Vec<&'static str> {
        let ast = crate::parse("Dockerfile", src).unwrap();
        let config = CheckConfig::from_ast(&ast);
        check(&ast, &config).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn buildkits_rules() {
        assert!(rules("FROM scratch AS base\nCOPY a /a\nCMD [\"/a\"]\n").is_empty());
        assert_eq!(rules("FROM scratch AS Base\n"), ["StageNameCasing"]);
        assert_eq!(rules("FROM scratch as base\n"), ["FromAsCasing"]);
        assert_eq!(rules("from scratch As base\n"), ["FromAsCasing"]);
        assert_eq!(
            rules("FROM scratch\ncopy a /a\nCOPY b /b\n"),
            ["ConsistentInstructionCasing"]
        );
        assert_eq!(rules("FROM scratch\nCMD /a\n"), ["JSONArgsRecommended"]);
        assert_eq!(
            rules("FROM scratch\nWORKDIR app\n"),
            ["WorkdirRelativePath"]
        );
        assert!(rules("FROM scratch\nWORKDIR /app\nWORKDIR sub\n").is_empty());
        assert_eq!(rules("FROM scratch\nENV a b\n"), ["LegacyKeyValueFormat"]);
        assert_eq!(
            rules("FROM scratch\nARG API_KEY\n"),
            ["SecretsUsedInArgOrEnv"]
        );
        assert!(rules("FROM scratch\nARG PUBLIC_KEY\n").is_empty());
        // Undeclared, and empty with defaults alone: both, as BuildKit.
        assert_eq!(
            rules("FROM $BASE\n"),
            ["UndefinedArgInFrom", "InvalidDefaultArgInFrom"]
        );
        assert_eq!(
            rules("ARG BASE=scratch\nFROM $BASEE\n")[0],
            "UndefinedArgInFrom"
        );
        assert!(rules("ARG BASE=scratch\nFROM $BASE\n").is_empty());
        assert_eq!(
            rules("ARG TAG\nFROM busybox:${TAG}\n"),
            ["InvalidDefaultArgInFrom"]
        );
        // Empty, but `busybox` is still a valid name.
        assert!(rules("ARG VARIANT\nFROM busybox${VARIANT}\n").is_empty());
        assert_eq!(
            rules("FROM scratch\nCMD [\"a\"]\nCMD [\"b\"]\n"),
            ["MultipleInstructionsDisallowed"]
        );
        assert_eq!(
            rules("FROM scratch\nMAINTAINER me\n"),
            ["MaintainerDeprecated"]
        );
        assert_eq!(
            rules("FROM scratch AS a\nFROM scratch AS a\n"),
            ["DuplicateStageName"]
        );
        assert_eq!(rules("FROM scratch AS context\n"), ["ReservedStageName"]);
        assert_eq!(
            rules("FROM scratch\nRUN a \\\n\n  b\n"),
            ["NoEmptyContinuation"]
        );
        assert_eq!(
            rules("FROM scratch\nEXPOSE 80/TCP 127.0.0.1:80:80\n"),
            ["ExposeProtoCasing", "ExposeInvalidFormat"]
        );
        assert!(rules("# check=skip=JSONArgsRecommended\nFROM scratch\nCMD /a\n").is_empty());
        assert!(rules("# check=skip=all\nFROM scratch AS Bad\n").is_empty());
        let ast = crate::parse("Dockerfile", "# check=error=true\nFROM scratch\n").unwrap();
        assert!(CheckConfig::from_ast(&ast).error);
    }

    #[test]
    fn findings_name_buildkits_lines() {
        let ast = crate::parse("Dockerfile", "FROM scratch\nCMD [\"a\"]\nCMD [\"b\"]\n").unwrap();
        let found = check(&ast, &CheckConfig::default());
        // The earlier CMD is the one ignored.
        assert_eq!(found[0].line, 2);
    }

    #[test]
    fn experimental_rules_need_the_directive() {
        let src = "# description\nARG VERSION=1\nFROM scratch\n";
        assert!(rules(src).is_empty());
        let on = format!("# check=experimental=InvalidDefinitionDescription\n\n{src}");
        assert_eq!(rules(&on), ["InvalidDefinitionDescription"]);
        let good =
            "# check=experimental=all\n\n# VERSION the version\nARG VERSION=1\nFROM scratch\n";
        assert!(rules(good).is_empty());
    }

    fn plan_rules(src: &str, env: &[&str], ignored: &[&str]) -> Vec<(&'static str, String)> {
        let ast = crate::parse("Dockerfile", src).unwrap();
        let config = CheckConfig::from_ast(&ast);
        let plan = Plan::new(ast, PlanOptions::default()).unwrap();
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        let base = |_: &str, p: &Platform| {
            Some(BaseImage {
                env: env.clone(),
                platform: p.clone(),
            })
        };
        let is_ignored = |p: &str| ignored.contains(&p);
        let facts = Facts {
            base_image: &base,
            ignored: (!ignored.is_empty()).then_some(&is_ignored as &dyn Fn(&str) -> bool),
            all_stages: true,
        };
        check_plan(&plan, &config, &facts)
            .into_iter()
            .map(|f| (f.rule, f.message))
            .collect()
    }

    #[test]
    fn undefined_vars_as_buildkit() {
        let found = plan_rules(
            "FROM img\nARG DECLARED\nENV A=$DECLARED B=${PAHT} C=$PATH\nCOPY $NOPE /d/\nRUN echo $SHELL_ONLY\n",
            &["PATH=/bin"],
            &[],
        );
        assert_eq!(
            found,
            [
                (
                    "UndefinedVar",
                    "Usage of undefined variable '$PAHT' (did you mean $PATH?)".to_string()
                ),
                (
                    "UndefinedVar",
                    "Usage of undefined variable '$NOPE'".to_string()
                ),
            ]
        );
        // The base image's Env, an earlier stage's ENV and ARGs count.
        let found = plan_rules(
            "FROM img AS a\nARG V=1\nENV E=x\nFROM a\nWORKDIR /$E/$V/$FROM_IMAGE\n",
            &["FROM_IMAGE=1"],
            &[],
        );
        assert!(found.is_empty(), "{found:?}");
        // A global ARG must be declared in the stage to be seen.
        let found = plan_rules("ARG G=1\nFROM img\nWORKDIR /$G\n", &[], &[]);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn copy_of_an_ignored_file_is_experimental() {
        let src = "FROM img\nCOPY ./secret.txt keep.txt /d/\n";
        assert!(plan_rules(src, &[], &["secret.txt"]).is_empty());
        let src = format!("# check=experimental=CopyIgnoredFile\n{src}");
        assert_eq!(
            plan_rules(&src, &[], &["secret.txt"]),
            [(
                "CopyIgnoredFile",
                "Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore".into()
            )]
        );
    }

    #[test]
    fn platform_flags() {
        let found = plan_rules("FROM --platform=$TARGETPLATFORM img\n", &[], &[]);
        assert_eq!(found[0].0, "RedundantTargetPlatform");
        let found = plan_rules("FROM --platform=linux/amd64 img\n", &[], &[]);
        assert_eq!(found[0].0, "FromPlatformFlagConstDisallowed");
        assert!(
            plan_rules("FROM --platform=linux/amd64 img AS build-amd64\n", &[], &[]).is_empty()
        );
        assert!(plan_rules("FROM --platform=$BUILDPLATFORM img\n", &[], &[]).is_empty());
    }
}
