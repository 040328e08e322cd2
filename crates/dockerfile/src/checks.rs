//! BuildKit's Dockerfile build checks (frontend/dockerfile/linter), run on
//! the syntax tree: each finding names its rule and where it is. The
//! `# check=skip=RULE,...;error=true` directive skips rules or makes
//! findings fail the build, as in BuildKit.

use crate::instructions::{Command, Instruction};
use crate::parser::{Ast, Node};
use crate::ParseError;
use std::collections::BTreeSet;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub message: String,
    pub line: usize,
}

/// What `# check=` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip: BTreeSet<String>,
    pub skip_all: bool,
    pub error: bool,
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
                match k {
                    "skip" if v == "all" => c.skip_all = true,
                    "skip" => c.skip.extend(v.split(',').map(|r| r.trim().to_string())),
                    "error" => c.error = v == "true",
                    _ => {}
                }
            }
        }
        c
    }
}

impl Finding {
    /// `file:line:column: Rule: message` and the line, as errors show.
    pub fn located(&self, ast: &Ast) -> ParseError {
        ast.error_at(self.line, 1, format!("{}: {}", self.rule, self.message))
    }
}

/// The first word of an instruction as written.
fn keyword_as_written(node: &Node) -> &str {
    node.original.split_whitespace().next().unwrap_or("")
}

fn is_upper(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_alphabetic()) && !word.chars().any(|c| c.is_ascii_lowercase())
}

/// BuildKit's SecretsUsedInArgOrEnv name pattern.
fn looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let tokens = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    lower.split('_').any(|t| tokens.contains(&t))
}

/// Every finding in `ast`, less the rules the config skips.
pub fn check(ast: &Ast, config: &CheckConfig) -> Vec<Finding> {
    if config.skip_all {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut add = |rule: &'static str, node: &Node, message: String| {
        if !config.skip.contains(rule) {
            out.push(Finding {
                rule,
                message,
                line: node.start_line,
            });
        }
    };
    // ConsistentInstructionCasing: the majority's case.
    let words: Vec<&str> = ast.nodes.iter().map(keyword_as_written).collect();
    let upper = words.iter().filter(|w| is_upper(w)).count();
    let majority_upper = upper * 2 >= words.len();
    let global_args: BTreeSet<String> = global_arg_names(ast);
    let no_default = global_args_without_default(ast);
    let mut stage_nodes: Vec<&Node> = Vec::new();
    let mut stages: Vec<Vec<&Node>> = Vec::new();
    for node in &ast.nodes {
        let word = keyword_as_written(node);
        let is_lower = word.chars().all(|c| !c.is_ascii_uppercase());
        if (majority_upper && !is_upper(word)) || (!majority_upper && !is_lower) {
            add(
                "ConsistentInstructionCasing",
                node,
                format!(
                    "Command '{word}' should match the case of the command majority ({})",
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
            );
        }
        if node.keyword == "from" {
            if !stage_nodes.is_empty() {
                stages.push(std::mem::take(&mut stage_nodes));
            }
            from_checks(node, &global_args, &mut add);
            default_arg_in_from(node, &no_default, &mut add);
        }
        stage_nodes.push(node);
    }
    if !stage_nodes.is_empty() {
        stages.push(stage_nodes);
    }
    for stage in &stages {
        stage_checks(stage, &mut add);
    }
    out
}

/// Global ARGs declared without a default value.
fn global_args_without_default(ast: &Ast) -> BTreeSet<String> {
    ast.nodes
        .iter()
        .take_while(|n| n.keyword != "from")
        .filter(|n| n.keyword == "arg")
        .flat_map(|n| n.args.iter())
        .filter(|a| !a.contains('='))
        .cloned()
        .collect()
}

fn global_arg_names(ast: &Ast) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETARCH",
        "TARGETVARIANT",
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDARCH",
        "BUILDVARIANT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for node in ast.nodes.iter().take_while(|n| n.keyword != "from") {
        for a in &node.args {
            names.insert(a.split('=').next().unwrap_or("").to_string());
        }
    }
    names
}

fn from_checks(
    node: &Node,
    global_args: &BTreeSet<String>,
    add: &mut impl FnMut(&'static str, &Node, String),
) {
    let words: Vec<&str> = node.original.split_whitespace().collect();
    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
        if let (Some(from), Some(name)) = (words.first(), words.get(i + 1)) {
            if is_upper(from) != is_upper(words[i]) {
                add(
                    "FromAsCasing",
                    node,
                    "'as' and 'FROM' keywords' casing do not match".into(),
                );
            }
            if name.chars().any(|c| c.is_ascii_uppercase()) {
                add(
                    "StageNameCasing",
                    node,
                    format!("Stage name '{name}' should be lowercase"),
                );
            }
            if ["scratch", "context"].contains(&name.to_ascii_lowercase().as_str()) {
                add(
                    "ReservedStageName",
                    node,
                    format!("'{name}' is reserved and should not be used as a stage name"),
                );
            }
        }
    }
    // Variables FROM uses must be global ARGs.
    if let Some(image) = node.args.first() {
        let mut rest = image.as_str();
        while let Some(i) = rest.find('$') {
            rest = &rest[i + 1..];
            let name: String = rest
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !global_args.contains(&name) {
                add(
                    "UndefinedArgInFrom",
                    node,
                    format!("FROM argument '{name}' is not declared"),
                );
            }
        }
    }
}

/// InvalidDefaultArgInFrom: a FROM whose image needs a global ARG that
/// has no default is empty or invalid unless the build gives the value.
fn default_arg_in_from(
    node: &Node,
    no_default: &BTreeSet<String>,
    add: &mut impl FnMut(&'static str, &Node, String),
) {
    let Some(image) = node.args.first() else {
        return;
    };
    let uses = |name: &String| {
        image.contains(&format!("${name}")) || image.contains(&format!("${{{name}}}"))
    };
    if no_default.iter().any(uses) {
        add(
            "InvalidDefaultArgInFrom",
            node,
            format!("Default value for ARG {image} results in empty or invalid base image name"),
        );
    }
}

fn stage_checks(stage: &[&Node], add: &mut impl FnMut(&'static str, &Node, String)) {
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    let mut workdir_absolute = false;
    for node in stage {
        let Ok(ins) = crate::instructions::from_node(node) else {
            continue;
        };
        match &ins {
            Instruction::Cmd(Command::Shell(_)) | Instruction::Entrypoint(Command::Shell(_)) => add(
                "JSONArgsRecommended",
                node,
                format!(
                    "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                    node.keyword.to_ascii_uppercase()
                ),
            ),
            Instruction::Maintainer(_) => add(
                "MaintainerDeprecated",
                node,
                "Maintainer instruction is deprecated in favor of using label".into(),
            ),
            Instruction::Workdir(w) => {
                if w.starts_with('/') || w.starts_with('$') {
                    workdir_absolute = true;
                } else if !workdir_absolute {
                    add(
                        "WorkdirRelativePath",
                        node,
                        format!("Relative workdir '{w}' can have unexpected results if the base image changes"),
                    );
                }
            }
            Instruction::Env(pairs) | Instruction::Label(pairs) => {
                let kw = node.keyword.to_ascii_uppercase();
                if !node.original.contains('=') {
                    add(
                        "LegacyKeyValueFormat",
                        node,
                        format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"),
                    );
                }
                if kw == "ENV" {
                    for (k, _) in pairs.iter().filter(|(k, _)| looks_secret(k)) {
                        add(
                            "SecretsUsedInArgOrEnv",
                            node,
                            format!("Do not use ARG or ENV instructions for sensitive data (ENV \"{k}\")"),
                        );
                    }
                }
            }
            Instruction::Arg(decls) => {
                for (k, _) in decls.iter().filter(|(k, _)| looks_secret(k)) {
                    add(
                        "SecretsUsedInArgOrEnv",
                        node,
                        format!("Do not use ARG or ENV instructions for sensitive data (ARG \"{k}\")"),
                    );
                }
            }
            _ => {}
        }
        if matches!(node.keyword.as_str(), "cmd" | "entrypoint" | "healthcheck") {
            let count = seen.entry(node.keyword.as_str()).or_insert(0);
            *count += 1;
            if *count == 2 {
                add(
                    "MultipleInstructionsDisallowed",
                    node,
                    format!(
                        "Multiple {} instructions should not be used in the same stage because only the last one will be used",
                        node.keyword.to_ascii_uppercase()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(rules("FROM $BASE\n"), ["UndefinedArgInFrom"]);
        assert!(rules("ARG BASE=scratch\nFROM $BASE\n").is_empty());
        assert_eq!(
            rules("ARG TAG\nFROM busybox:${TAG}\n"),
            ["InvalidDefaultArgInFrom"]
        );
        assert_eq!(
            rules("FROM scratch\nCMD [\"a\"]\nCMD [\"b\"]\n"),
            ["MultipleInstructionsDisallowed"]
        );
        assert_eq!(
            rules("FROM scratch\nMAINTAINER me\n"),
            ["MaintainerDeprecated"]
        );
        assert!(rules("# check=skip=JSONArgsRecommended\nFROM scratch\nCMD /a\n").is_empty());
        assert!(rules("# check=skip=all\nFROM scratch AS Bad\n").is_empty());
        let ast = crate::parse("Dockerfile", "# check=error=true\nFROM scratch\n").unwrap();
        assert!(CheckConfig::from_ast(&ast).error);
    }
}
