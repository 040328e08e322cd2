//! The checks that need only the syntax tree (BuildKit runs them while it
//! parses instructions: instructions/parse.go and the stage-name pass of
//! dockerfile2llb/convert.go).

use super::{suggest, Report};
use crate::instructions::{Command, Instruction};
use crate::parser::{Ast, Node};
use crate::shell::Lex;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The first word of an instruction as written.
fn keyword_as_written(node: &Node) -> &str {
    node.original.split_whitespace().next().unwrap_or("")
}

fn is_upper(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_alphabetic()) && !word.chars().any(|c| c.is_ascii_lowercase())
}

/// BuildKit's SecretsUsedInArgOrEnv: some `_`-separated word of the name
/// is a secret-like token, and none is `public`.
fn looks_secret(name: &str) -> bool {
    const TOKENS: [&str; 10] = [
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
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower.split('_').collect();
    words.iter().any(|w| TOKENS.contains(w)) && !words.contains(&"public")
}

/// Every syntax-level finding of `ast`.
pub(super) fn check(ast: &Ast, report: &mut Report) {
    let words: Vec<&str> = ast.nodes.iter().map(keyword_as_written).collect();
    let upper = words.iter().filter(|w| is_upper(w)).count();
    let majority_upper = upper * 2 >= words.len();
    let globals = GlobalArgs::new(ast);
    let mut stage_names = BTreeSet::new();
    let mut stage: Vec<&Node> = Vec::new();
    for node in &ast.nodes {
        instruction_casing(node, majority_upper, report);
        if node.empty_continuation {
            report.add(
                "NoEmptyContinuation",
                node,
                "Empty continuation line".into(),
            );
        }
        if node.keyword == "from" {
            stage_checks(&stage, report);
            stage.clear();
            from_checks(node, &globals, &mut stage_names, report);
        } else if stage.is_empty() && node.keyword == "arg" {
            definition_description(node, report);
        }
        stage.push(node);
    }
    stage_checks(&stage, report);
}

fn instruction_casing(node: &Node, majority_upper: bool, report: &mut Report) {
    let word = keyword_as_written(node);
    let is_lower = word.chars().all(|c| !c.is_ascii_uppercase());
    if (majority_upper && !is_upper(word)) || (!majority_upper && !is_lower) {
        let case = if majority_upper {
            "uppercase"
        } else {
            "lowercase"
        };
        report.add(
            "ConsistentInstructionCasing",
            node,
            format!("Command '{word}' should match the case of the command majority ({case})"),
        );
    }
}

/// The global ARGs: their names and their values from defaults alone.
struct GlobalArgs {
    lex: Lex,
    names: BTreeSet<String>,
    defaults: BTreeMap<String, String>,
}

impl GlobalArgs {
    fn new(ast: &Ast) -> GlobalArgs {
        let lex = Lex::new(ast.escape);
        let mut names: BTreeSet<String> = crate::plan::PLATFORM_ARG_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        // The platform ARGs have values in every build.
        let mut defaults: BTreeMap<String, String> =
            names.iter().map(|n| (n.clone(), "x".to_string())).collect();
        let globals = ast.nodes.iter().take_while(|n| n.keyword != "from");
        for node in globals.filter(|n| n.keyword == "arg") {
            let Ok(Instruction::Arg(decls)) = crate::instructions::from_node(node) else {
                continue;
            };
            for (name, default) in decls {
                names.insert(name.clone());
                let env = |k: &str| defaults.get(k).cloned();
                match default.map(|d| lex.process_word(&d, &env)) {
                    Some(Ok(v)) => defaults.insert(name, v),
                    _ => defaults.remove(&name),
                };
            }
        }
        GlobalArgs {
            lex,
            names,
            defaults,
        }
    }
}

fn from_checks(
    node: &Node,
    globals: &GlobalArgs,
    stage_names: &mut BTreeSet<String>,
    report: &mut Report,
) {
    let Ok(Instruction::From { image, name, .. }) = crate::instructions::from_node(node) else {
        return;
    };
    let words: Vec<&str> = node.original.split_whitespace().collect();
    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
        let (from, as_) = (words[0], words[i]);
        let consistent = match (
            is_upper(from),
            from.chars().all(|c| !c.is_ascii_uppercase()),
        ) {
            (true, _) => as_ == as_.to_ascii_uppercase(),
            (_, true) => as_ == as_.to_ascii_lowercase(),
            // A mixed-case FROM is ConsistentInstructionCasing's business.
            _ => true,
        };
        if !consistent {
            report.add(
                "FromAsCasing",
                node,
                format!("'{as_}' and '{from}' keywords' casing do not match"),
            );
        }
        if let Some(written) = words.get(i + 1) {
            if written.chars().any(|c| c.is_ascii_uppercase()) {
                report.add(
                    "StageNameCasing",
                    node,
                    format!("Stage name '{written}' should be lowercase"),
                );
            }
        }
    }
    if let Some(name) = &name {
        if ["scratch", "context"].contains(&name.as_str()) {
            report.add(
                "ReservedStageName",
                node,
                format!("Stage name should not use the same name as reserved stage {name:?}"),
            );
        }
        if !stage_names.insert(name.clone()) {
            report.add(
                "DuplicateStageName",
                node,
                format!("Duplicate stage name {name:?}, stage names should be unique"),
            );
        }
        definition_description(node, report);
    }
    undefined_arg_in_from(node, &image, globals, report);
}

/// UndefinedArgInFrom and InvalidDefaultArgInFrom: FROM may use global
/// ARGs only, and their defaults alone must make a valid image name.
fn undefined_arg_in_from(node: &Node, image: &str, globals: &GlobalArgs, report: &mut Report) {
    let unmatched = std::cell::RefCell::new(BTreeSet::new());
    let env = |k: &str| {
        if !globals.names.contains(k) {
            unmatched.borrow_mut().insert(k.to_string());
        }
        globals.defaults.get(k).cloned()
    };
    let Ok(expanded) = globals.lex.process_word(image, &env) else {
        return;
    };
    let options: Vec<&str> = globals.names.iter().map(String::as_str).collect();
    for name in unmatched.into_inner() {
        let hint = suggest(&name, &options)
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        report.add(
            "UndefinedArgInFrom",
            node,
            format!("FROM argument '{name}' is not declared{hint}"),
        );
    }
    if image.contains('$') && !valid_image_name(&expanded) {
        report.add(
            "InvalidDefaultArgInFrom",
            node,
            format!("Default value for ARG {image} results in empty or invalid base image name"),
        );
    }
}

/// Whether `s` parses as an image reference (distribution's grammar:
/// lower-case path components, an optional tag, an optional digest).
fn valid_image_name(s: &str) -> bool {
    static GRAMMAR: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = GRAMMAR.get_or_init(|| {
        // Go's `\w` is ASCII: as a Unicode class, a tag's 128 repeats of
        // it took 25 ms to compile, before the first request of a build.
        let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let domain = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?";
        let pattern = format!(
            r"^{domain}{component}(?:/{component})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@[a-z0-9]+:[a-fA-F0-9]{{32,}})?$"
        );
        regex::Regex::new(&pattern).expect("a fixed pattern")
    });
    re.is_match(s)
}

/// InvalidDefinitionDescription (experimental): a comment right above a
/// named stage or a global ARG starts with the name it describes.
fn definition_description(node: &Node, report: &mut Report) {
    let Some(last) = node.comments.last() else {
        return;
    };
    let (instruction, keys): (&str, Vec<String>) = match crate::instructions::from_node(node) {
        Ok(Instruction::From {
            name: Some(name), ..
        }) => ("FROM", vec![name]),
        Ok(Instruction::Arg(decls)) => ("ARG", decls.into_iter().map(|(k, _)| k).collect()),
        _ => return,
    };
    let first = last.split(' ').next().unwrap_or("");
    if keys.is_empty() || keys.iter().any(|k| k == first) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        &keys[0]
    };
    report.add(
        "InvalidDefinitionDescription",
        node,
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    );
}

fn stage_checks(stage: &[&Node], report: &mut Report) {
    let mut last_seen = HashMap::<&str, &Node>::new();
    let mut workdir_absolute = false;
    for node in stage {
        let Ok(ins) = crate::instructions::from_node(node) else {
            continue;
        };
        match &ins {
            Instruction::Cmd(Command::Shell(_)) | Instruction::Entrypoint(Command::Shell(_)) => {
                report.add(
                    "JSONArgsRecommended",
                    node,
                    format!(
                        "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                        node.keyword.to_ascii_uppercase()
                    ),
                )
            }
            Instruction::Maintainer(_) => report.add(
                "MaintainerDeprecated",
                node,
                "Maintainer instruction is deprecated in favor of using label".into(),
            ),
            Instruction::Workdir(w) => {
                if w.starts_with('/') || w.starts_with('$') {
                    workdir_absolute = true;
                } else if !workdir_absolute {
                    report.add(
                        "WorkdirRelativePath",
                        node,
                        format!("Relative workdir {w:?} can have unexpected results if the base image changes"),
                    );
                }
            }
            Instruction::Env(pairs) | Instruction::Label(pairs) => {
                let kw = node.keyword.to_ascii_uppercase();
                if !node.original.contains('=') {
                    report.add(
                        "LegacyKeyValueFormat",
                        node,
                        format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"),
                    );
                }
                if kw == "ENV" {
                    secrets(node, "ENV", pairs.iter().map(|(k, _)| k), report);
                }
            }
            Instruction::Arg(decls) => secrets(node, "ARG", decls.iter().map(|(k, _)| k), report),
            Instruction::Expose(ports) => expose(node, ports, report),
            _ => {}
        }
        if matches!(node.keyword.as_str(), "cmd" | "entrypoint" | "healthcheck") {
            // BuildKit reports the earlier instruction: it is the one ignored.
            if let Some(earlier) = last_seen.insert(node.keyword.as_str(), node) {
                report.add(
                    "MultipleInstructionsDisallowed",
                    earlier,
                    format!(
                        "Multiple {} instructions should not be used in the same stage because only the last one will be used",
                        node.keyword.to_ascii_uppercase()
                    ),
                );
            }
        }
    }
}

fn secrets<'a>(
    node: &Node,
    instruction: &str,
    keys: impl Iterator<Item = &'a String>,
    report: &mut Report,
) {
    for k in keys.filter(|k| looks_secret(k)) {
        report.add(
            "SecretsUsedInArgOrEnv",
            node,
            format!("Do not use ARG or ENV instructions for sensitive data ({instruction} {k:?})"),
        );
    }
}

/// ExposeProtoCasing and ExposeInvalidFormat (dockerfile2llb's
/// convert_expose.go).
fn expose(node: &Node, ports: &[String], report: &mut Report) {
    for port in ports {
        let (number, proto) = port.split_once('/').unwrap_or((port, ""));
        if proto != proto.to_ascii_lowercase() {
            report.add(
                "ExposeProtoCasing",
                node,
                format!("Defined protocol '{port}' in EXPOSE instruction should be lowercase"),
            );
        }
        if number.contains(':') {
            report.add(
                "ExposeInvalidFormat",
                node,
                format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_as_buildkit() {
        assert!(looks_secret("API_KEY"));
        assert!(looks_secret("github_token"));
        assert!(looks_secret("AUTH"));
        assert!(!looks_secret("PUBLIC_KEY"));
        assert!(!looks_secret("KEYBOARD"));
        assert!(looks_secret("MY_KEY_NAME"));
    }

    #[test]
    fn image_names() {
        assert!(valid_image_name("busybox"));
        assert!(valid_image_name("localhost:5000/a/b:1.0"));
        assert!(!valid_image_name("busybox:"));
        assert!(!valid_image_name(""));
        // Go's `\w`, in distribution's tag grammar, is ASCII.
        assert!(!valid_image_name("busybox:caf\u{e9}"));
        assert!(valid_image_name("busybox:Tag_1.2-x"));
        assert!(!valid_image_name("Busybox"));
    }
}
