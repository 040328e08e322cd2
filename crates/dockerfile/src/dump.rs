//! Printing the tree: BuildKit's `Node.Dump()` format (the conformance
//! `result` files) and JSON.

use crate::parser::{Ast, Node};

/// Go's `strconv.Quote`: printable characters as they are, others escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: graphic characters and the
/// ASCII space; other spaces, controls and format characters are escaped.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32, 0xad | 0x600..=0x605 | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff)
}

/// One node as BuildKit dumps it, without the surrounding parentheses.
pub fn node_buildkit(node: &Node) -> String {
    let mut s = node.keyword.clone();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        s.push_str(&format!(" [{}]", flags.join(" ")));
    }
    if let Some(sub) = &node.sub {
        s.push_str(&format!(" ({})", node_buildkit(sub)));
    }
    for a in &node.args {
        s.push(' ');
        s.push_str(&go_quote(a));
    }
    s.trim().to_string()
}

/// The whole file in the conformance `result` format.
pub fn buildkit(ast: &Ast) -> String {
    ast.nodes
        .iter()
        .map(|n| format!("({})\n", node_buildkit(n)))
        .collect()
}

/// The tree as pretty JSON (directives, nodes with lines, flags, heredocs).
pub fn json(ast: &Ast) -> String {
    serde_json::to_string_pretty(ast)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\t♥"), "\"\\x00\\t♥\"");
    }

    #[test]
    fn onbuild_nests() {
        let ast = crate::parse("D", "ONBUILD RUN echo test\nONBUILD\n").unwrap();
        assert_eq!(buildkit(&ast), "(onbuild (run \"echo test\"))\n(onbuild)\n");
    }
}
