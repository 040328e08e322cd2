//! Line reader and tree builder, following BuildKit's `parser.go`:
//! directives, line continuations (with comments and blank lines inside
//! them), flags, heredocs. The tree keeps the raw strings; expansion happens
//! later with the environment each step sees.

use crate::error::ParseError;
use crate::invalid::Invalid;
use crate::line_parsers::{self as lp, Parsed};
use crate::shell::Lex;
use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

/// One heredoc attached to an instruction (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    pub name: String,
    /// Content including the trailing newline of each line.
    pub content: String,
    /// False when the delimiter was quoted: no expansion inside.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every line.
    pub chomp: bool,
    pub file_descriptor: u32,
}

impl Heredoc {
    /// The content as the instruction sees it (`<<-` strips leading tabs).
    pub fn effective_content(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Lower-cased instruction keyword (`run`, `copy`, ...).
    pub keyword: String,
    pub flags: Vec<String>,
    pub args: Vec<String>,
    /// ONBUILD's nested instruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<Box<Node>>,
    /// Exec (JSON array) form.
    pub json: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text with continuations joined.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines directly above the instruction.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<String>,
    /// A blank line inside the instruction's continuation (BuildKit's
    /// NoEmptyContinuation check).
    #[serde(skip)]
    pub empty_continuation: bool,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ast {
    pub file: String,
    pub escape: char,
    /// Parser directives (`syntax`, `escape`, `check`, ...), lower-cased names.
    pub directives: Vec<(String, String)>,
    pub nodes: Vec<Node>,
    #[serde(skip)]
    lines: Vec<String>,
}

impl Ast {
    /// The source line `n` (1-based), for error messages.
    pub fn source_line(&self, n: usize) -> &str {
        self.lines
            .get(n.wrapping_sub(1))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// An error located at `line`, column `column` of this file.
    pub fn error_at(&self, line: usize, column: usize, message: impl Into<String>) -> ParseError {
        ParseError::new(&self.file, line, column, message, self.source_line(line))
    }

    /// An error about a node: points at its first argument.
    pub fn error_in(&self, node: &Node, message: impl Into<String>) -> ParseError {
        let src = self.source_line(node.start_line);
        let indent = src.chars().take_while(|c| c.is_whitespace()).count();
        // Point at the arguments, or at the keyword when it is not one.
        let known = crate::instructions::KEYWORDS.contains(&node.keyword.as_str());
        let col = if known {
            indent + node.keyword.chars().count() + 2
        } else {
            indent + 1
        };
        self.error_at(
            node.start_line,
            col.min(src.chars().count().max(1)),
            message,
        )
    }
}

fn directive_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
            .expect("static regex")
    })
}

fn heredoc_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"^(\d*)<<(-?)(['"]?)([a-zA-Z_][a-zA-Z0-9_]*)(['"]?)$"#).expect("static regex")
    })
}

struct Directives {
    escape: char,
    done: bool,
    seen: Vec<(String, String)>,
    lines_seen: usize,
}

impl Directives {
    /// Looks at a raw line while directives may still appear.
    fn observe(&mut self, raw: &str) -> Result<(), (usize, String)> {
        self.lines_seen += 1;
        if self.done {
            return Ok(());
        }
        if self.lines_seen == 1 && raw.starts_with("#!") {
            return Ok(());
        }
        let Some(caps) = directive_regex().captures(raw) else {
            self.done = true;
            return Ok(());
        };
        let name = caps[1].to_ascii_lowercase();
        let value = caps[2].to_string();
        if self.seen.iter().any(|(k, _)| *k == name) {
            return Err((1, format!("only one {name} parser directive can be used")));
        }
        if name == "escape" {
            match value.as_str() {
                "`" => self.escape = '`',
                "\\" => self.escape = '\\',
                _ => {
                    return Err((
                        caps.get(2).map_or(1, |m| m.start() + 1),
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ))
                }
            }
        }
        self.seen.push((name, value));
        Ok(())
    }

    /// BuildKit's line-continuation rule: the escape token at the end of the
    /// line (trailing blanks allowed), unless it is itself escaped.
    fn trim_continuation(&self, line: &str) -> (String, bool) {
        let trimmed = line.trim_end_matches([' ', '\t']);
        if let Some(before) = trimmed.strip_suffix(self.escape) {
            match before.chars().last() {
                None => return (String::new(), false),
                Some(c) if c != self.escape => return (before.to_string(), false),
                _ => {}
            }
        }
        (line.to_string(), true)
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Splits keeping the newline, as BuildKit's scanner does.
fn raw_lines(src: &str) -> Vec<&str> {
    src.split_inclusive('\n').collect()
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// Parses a Dockerfile. `file` names it in error messages.
pub fn parse(file: &str, src: &str) -> Result<Ast, ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let raw = raw_lines(src);
    let lines: Vec<String> = raw.iter().map(|l| trim_newline(l).to_string()).collect();
    let mut ast = Ast {
        file: file.to_string(),
        escape: '\\',
        directives: Vec::new(),
        nodes: Vec::new(),
        lines,
    };
    let mut d = Directives {
        escape: '\\',
        done: false,
        seen: Vec::new(),
        lines_seen: 0,
    };
    let mut comments: Vec<String> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let raw_line = raw[i];
        let line_no = i + 1;
        i += 1;
        let no_nl = trim_newline(raw_line);
        d.observe(no_nl)
            .map_err(|(col, m)| ast.error_at(line_no, col, m))?;
        if is_comment(no_nl) {
            let c = no_nl.trim_start()[1..].trim();
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_string());
            }
            continue;
        }
        let first = no_nl.trim_start();
        let (mut line, mut end) = d.trim_continuation(first);
        if end && line.is_empty() {
            continue;
        }
        let start_line = line_no;
        let mut empty_continuation = false;
        while !end && i < raw.len() {
            let cont_raw = trim_newline(raw[i]);
            i += 1;
            d.observe(cont_raw)
                .map_err(|(col, m)| ast.error_at(i, col, m))?;
            if is_comment(cont_raw) {
                continue;
            }
            if cont_raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (c, e) = d.trim_continuation(cont_raw);
            line.push_str(&c);
            end = e;
        }
        let end_line = i;
        let mut node = node_from_line(&line, d.escape).map_err(|m| {
            let src = ast.source_line(start_line);
            let col = src.chars().take_while(|c| c.is_whitespace()).count() + 1;
            ast.error_at(start_line, col, m.to_string())
        })?;
        node.start_line = start_line;
        node.end_line = end_line;
        node.comments = std::mem::take(&mut comments);
        node.empty_continuation = empty_continuation;

        if can_contain_heredoc(&node) && line.contains("<<") {
            let docs = heredocs_from_line(&line)
                .map_err(|m| ast.error_at(start_line, 1, m.to_string()))?;
            for mut doc in docs {
                let mut terminated = false;
                while i < raw.len() {
                    let body = raw[i];
                    i += 1;
                    let mut candidate = trim_newline(body);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body);
                }
                if !terminated {
                    return Err(ast.error_at(
                        start_line,
                        1,
                        format!(
                            "unterminated heredoc {:?}: no line {:?} before the end of the file",
                            doc.name, doc.name
                        ),
                    ));
                }
                node.heredocs.push(doc);
            }
            node.end_line = i;
        }
        ast.nodes.push(node);
    }
    ast.escape = d.escape;
    ast.directives = d.seen;
    if ast.nodes.is_empty() {
        return Err(ParseError::new(file, 1, 1, "file with no instructions", ""));
    }
    Ok(ast)
}

fn can_contain_heredoc(node: &Node) -> bool {
    let n = match (&node.keyword[..], &node.sub) {
        ("onbuild", Some(sub)) => sub,
        _ => node,
    };
    matches!(n.keyword.as_str(), "run" | "copy" | "add") && !n.json
}

fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, Invalid> {
    let lex = Lex {
        escape: '\\',
        raw_quotes: true,
        raw_escapes: false,
    };
    // An unbalanced quote elsewhere on the line just means no heredoc words.
    let words = lex.process_words(line, &|_: &str| None).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        let Some(caps) = heredoc_regex().captures(&word) else {
            continue;
        };
        let (open, close) = (&caps[3], &caps[5]);
        if open != close {
            return Err(Invalid::HeredocQuotes);
        }
        docs.push(Heredoc {
            name: caps[4].to_string(),
            content: String::new(),
            expand: open.is_empty(),
            chomp: &caps[2] == "-",
            file_descriptor: caps[1].parse().unwrap_or(0),
        });
    }
    Ok(docs)
}

/// Builds a node from one logical line (continuations joined).
fn node_from_line(line: &str, escape: char) -> Result<Node, Invalid> {
    let trimmed = line.trim();
    let mut parts = lp::split_ws(trimmed, Some(2)).into_iter();
    let cmd = parts.next().unwrap_or_default();
    let (flags, rest) = match parts.next() {
        Some(r) => lp::extract_builder_flags(&r),
        None => (Vec::new(), String::new()),
    };
    let keyword = cmd.to_ascii_lowercase();
    let mut sub = None;
    let parsed: Parsed = match keyword.as_str() {
        "add" | "copy" | "volume" => lp::parse_maybe_json_to_list(&rest)?,
        "arg" => lp::parse_name_or_name_val(&rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => lp::parse_maybe_json(&rest)?,
        "env" => lp::parse_name_val(&rest, "ENV", escape)?,
        "label" => lp::parse_name_val(&rest, "LABEL", escape)?,
        "expose" | "from" => lp::parse_strings_whitespace_delimited(&rest),
        "healthcheck" => lp::parse_health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => lp::parse_string(&rest),
        "onbuild" => {
            if !rest.is_empty() {
                sub = Some(Box::new(node_from_line(&rest, escape)?));
            }
            Parsed::default()
        }
        _ => Parsed::default(),
    };
    Ok(Node {
        keyword,
        flags,
        args: parsed.args,
        sub,
        json: parsed.json,
        heredocs: Vec::new(),
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
        comments: Vec::new(),
        empty_continuation: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_kept_in_tree() {
        let ast = parse(
            "Dockerfile",
            "FROM scratch\nRUN <<EOF cat <<-'EOT'\necho hi\nEOF\n\tsecond\n\tEOT\nCMD x\n",
        )
        .unwrap();
        let run = &ast.nodes[1];
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].name, "EOF");
        assert_eq!(run.heredocs[0].content, "echo hi\n");
        assert!(run.heredocs[0].expand);
        assert_eq!(run.heredocs[1].name, "EOT");
        assert!(!run.heredocs[1].expand);
        assert!(run.heredocs[1].chomp);
        assert_eq!(run.heredocs[1].effective_content(), "second\n");
        assert_eq!(ast.nodes[2].keyword, "cmd");
        assert_eq!(ast.nodes[2].start_line, 7);
    }

    #[test]
    fn copy_heredoc_and_json_form_has_none() {
        let ast = parse(
            "D",
            "COPY <<A <<B /dst/\na\nA\nb\nB\nRUN [\"echo\", \"<<X\"]\n",
        )
        .unwrap();
        assert_eq!(ast.nodes[0].heredocs.len(), 2);
        assert!(ast.nodes[1].heredocs.is_empty());
    }

    #[test]
    fn unterminated_heredoc_names_line() {
        let err = parse("Dockerfile", "FROM scratch\nRUN <<EOF\nfoo\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("Dockerfile:2:1"), "{err}");
    }

    #[test]
    fn mount_flags_repeat() {
        let ast = parse(
            "D",
            "RUN --mount=type=cache,target=/a --mount=type=secret,id=x echo\n",
        )
        .unwrap();
        assert_eq!(
            ast.nodes[0].flags,
            vec!["--mount=type=cache,target=/a", "--mount=type=secret,id=x"]
        );
        assert_eq!(ast.nodes[0].args, vec!["echo"]);
    }

    #[test]
    fn bad_escape_directive() {
        let err = parse("D", "# escape=x\nFROM a\n").unwrap_err();
        assert!(err.message.contains("invalid escape token"));
    }
}
