//! `.dockerignore` patterns with docker's semantics (moby patternmatcher):
//! Go `filepath.Match` syntax plus `**`, `!` exceptions, the last matching
//! pattern wins, and a pattern matching a parent directory matches the file.

use regex::Regex;

#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: bad pattern {pattern:?}: {source}")]
pub struct IgnoreError {
    pub line: usize,
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

impl IgnoreMatcher {
    /// Parse the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<IgnoreMatcher, IgnoreError> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut cleaned = clean(body);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if cleaned.is_empty() || cleaned == "." {
                continue;
            }
            let regex = compile(&cleaned).map_err(|source| IgnoreError {
                line: i + 1,
                pattern: body.to_string(),
                source,
            })?;
            patterns.push(Pattern { regex, exclusion });
        }
        Ok(IgnoreMatcher { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some `!` pattern exists (then an excluded directory may
    /// still hold included files and must be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel` (slash-separated, relative to the context) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let parents: Vec<&str> = rel.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.regex.is_match(rel);
            if !hit && parents.len() > 1 {
                for i in 1..parents.len() {
                    if p.regex.is_match(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

/// Lexical clean of a slash path (Go's `path.Clean`).
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    i += 1;
                }
                if i + 1 >= chars.len() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => {
                i += 1;
                if let Some(n) = chars.get(i) {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            '[' => {
                // A character class, copied through (`^`/`!` negation).
                let mut j = i + 1;
                let mut class = String::from("[");
                if matches!(chars.get(j), Some('!') | Some('^')) {
                    class.push('^');
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        j += 1;
                    }
                    let ch = chars[j];
                    if ch == '[' || ch == '\\' || ch == '&' || ch == '~' {
                        class.push('\\');
                    }
                    class.push(ch);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(regex::Error::Syntax("unterminated character class".into()));
                }
                class.push(']');
                re.push_str(&class);
                i = j;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re)
}

/// Go `filepath.Match` for one path component (no `/` in name).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    compile(pattern).map(|r| r.is_match(name)).unwrap_or(false)
}

/// Whether a COPY source uses wildcards.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_semantics() {
        let m = IgnoreMatcher::parse(
            "# comment\n*.log\n!keep.log\nbuild\n**/tmp\n/docs/*.md\n!docs/README.md\n",
        )
        .unwrap();
        assert!(m.excluded("a.log"));
        assert!(!m.excluded("keep.log"));
        assert!(!m.excluded("sub/a.log"), "* does not cross /");
        assert!(m.excluded("build"));
        assert!(m.excluded("build/x/y"), "parent match excludes children");
        assert!(m.excluded("tmp") && m.excluded("a/b/tmp") && m.excluded("a/tmp/f"));
        assert!(m.excluded("docs/x.md"));
        assert!(!m.excluded("docs/README.md"));
        assert!(!m.excluded("src/main.rs"));
        assert!(m.has_exceptions());
        let all = IgnoreMatcher::parse("**\n!src/**\n").unwrap();
        assert!(all.excluded("x") && !all.excluded("src/a/b"));
    }

    #[test]
    fn globs_and_clean() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txb"));
        assert!(glob_match("[a-c]?", "b1"));
        assert!(glob_match("[!a]x", "bx") && !glob_match("[!a]x", "ax"));
        assert_eq!(clean("/a/../../b/./c/"), "/b/c");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
    }
}
