//! Small text helpers for messages.

use kiln_dockerfile::Node as AstNode;

/// The first line of an instruction, for messages.
pub(crate) fn first_line(node: &AstNode) -> String {
    node.original
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}
