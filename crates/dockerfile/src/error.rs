use std::fmt;

/// A front-end error with its location: file, 1-based line and column, and
/// the offending source line so the user sees what is wrong without opening
/// the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The source line the error points at (may be empty for whole-file errors).
    pub source_line: String,
}

impl ParseError {
    pub fn new(
        file: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
        source_line: &str,
    ) -> Self {
        ParseError {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
            source_line: source_line.trim_end_matches(['\r', '\n']).to_string(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.source_line.is_empty() {
            let gutter = format!("{:>5} | ", self.line);
            write!(f, "\n{}{}", gutter, self.source_line)?;
            // Columns count characters; tabs keep their width so the caret lines up.
            let pad: String = self
                .source_line
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{}{}^", " ".repeat(gutter.len()), pad)?;
        }
        Ok(())
    }
}
