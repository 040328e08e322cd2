//! Shell-style word expansion with BuildKit's semantics (`shell/lex.go`):
//! quotes, escapes, `$v`, `${v}` and the modifiers
//! `:- - :+ + :? ? # ## % %% / //`.

use regex::Regex;

/// Looks a variable up; `None` means unset (distinct from empty).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {problem}")]
pub struct ExpandError {
    pub word: String,
    pub problem: ExpandProblem,
}

/// What is wrong with a word (BuildKit's `shell/lex.go` messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandProblem {
    #[error("unexpected end of statement while looking for matching {0}")]
    UnexpectedEnd(String),
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${name:?message}` (or its default message) on an unset or empty
    /// variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: {message}")]
    Pattern { pattern: String, message: String },
}

/// A glob that cannot be a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PatternError {
    #[error("invalid escape '\\{0}'")]
    Escape(char),
    #[error("invalid escape at end of pattern")]
    EscapeAtEnd,
    #[error("{0}")]
    Regex(String),
}

/// The expander's settings.
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
}

impl Default for Lex {
    fn default() -> Self {
        Lex {
            escape: '\\',
            raw_quotes: false,
            raw_escapes: false,
        }
    }
}

impl Lex {
    pub fn new(escape: char) -> Self {
        Lex {
            escape,
            ..Lex::default()
        }
    }

    /// Expands `word` as one word (no field splitting).
    pub fn process_word(&self, word: &str, env: EnvLookup) -> Result<String, ExpandError> {
        self.run(word, env).map(|(w, _)| w)
    }

    /// Expands and splits into words as the shell would (unquoted
    /// whitespace, including whitespace from variable values, separates).
    pub fn process_words(&self, word: &str, env: EnvLookup) -> Result<Vec<String>, ExpandError> {
        self.run(word, env).map(|(_, ws)| ws)
    }

    fn run(&self, word: &str, env: EnvLookup) -> Result<(String, Vec<String>), ExpandError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            env,
            escape: self.escape,
            raw_quotes: self.raw_quotes,
            raw_escapes: self.raw_escapes,
        };
        sw.process_stop_on(None, self.raw_escapes)
            .map_err(|problem| ExpandError {
                word: word.to_string(),
                problem,
            })
    }
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: EnvLookup<'a>,
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandProblem> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandProblem> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                    words.add_string(&v);
                }
                '\'' => {
                    let v = self.process_single_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                '"' => {
                    let v = self.process_double_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                _ => {
                    let mut ch = ch;
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(ExpandProblem::UnexpectedEnd(stop.to_string()));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandProblem> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandProblem::UnexpectedEnd("single-quote".into())),
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandProblem> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandProblem::UnexpectedEnd("double-quote".into())),
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.escape => {
                                ch = c;
                                self.next();
                            }
                            _ => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_dollar(&mut self) -> Result<String, ExpandProblem> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get_env(&name).unwrap_or_default());
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(ExpandProblem::MissingBrace),
            Some('{') | Some('}') | Some(':') => return Err(ExpandProblem::BadSubstitution),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(ExpandProblem::MissingBrace);
        };
        let mut chs = ch.to_string();
        match ch {
            '}' => Ok(self.get_env(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut null_is_unset = false;
                if ch == ':' {
                    null_is_unset = true;
                    let Some(c) = self.next() else {
                        return Err(ExpandProblem::MissingBrace);
                    };
                    ch = c;
                    chs.push(c);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(ExpandProblem::UnsupportedModifier(chs.to_string()));
                }
                if !matches!(ch, '+' | '-' | '?' | '#' | '%') {
                    return Err(ExpandProblem::UnsupportedModifier(chs.to_string()));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err(ExpandProblem::MissingBrace);
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match ch {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(ExpandProblem::Required {
                            name,
                            message: match word.is_empty() {
                                true => "is not allowed to be unset".into(),
                                false => word,
                            },
                        }),
                        Some(v) if null_is_unset && v.is_empty() => Err(ExpandProblem::Required {
                            name,
                            message: match word.is_empty() {
                                true => "is not allowed to be empty".into(),
                                false => word,
                            },
                        }),
                        Some(v) => Ok(v),
                    },
                    _ => {
                        let value = value.unwrap_or_default();
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(p) => (true, p.to_string()),
                            None => (false, word),
                        };
                        if ch == '%' {
                            trim_suffix(&pat, &value, greedy)
                        } else {
                            trim_prefix(&pat, &value, greedy)
                        }
                    }
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err(ExpandProblem::MissingSlash);
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err(ExpandProblem::MissingBrace);
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name).unwrap_or_default();
                let re =
                    shell_pattern_to_regex(&pattern, true, false).map_err(bad_pattern(&pattern))?;
                if replace_all {
                    Ok(re
                        .replace_all(&value, regex::NoExpand(&replacement))
                        .into_owned())
                } else {
                    Ok(re
                        .replace(&value, regex::NoExpand(&replacement))
                        .into_owned())
                }
            }
            _ => Err(ExpandProblem::UnsupportedModifier(chs.to_string())),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(|c| c.is_ascii_digit()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// Converts a shell glob (`*`, `?`, `\` escapes) to a regex.
fn shell_pattern_to_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<Regex, PatternError> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut it = pattern.chars().peekable();
    while let Some(tok) = it.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(it.peek(), Some('}') | Some('/')) {
                    continue;
                }
                match it.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    Some(c) => return Err(PatternError::Escape(c)),
                    None => return Err(PatternError::EscapeAtEnd),
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    Regex::new(&out).map_err(|e| PatternError::Regex(e.to_string()))
}

/// A pattern that cannot be used, as the substitution reports it.
fn bad_pattern(pattern: &str) -> impl FnOnce(PatternError) -> ExpandProblem + '_ {
    move |e| ExpandProblem::Pattern {
        pattern: pattern.to_string(),
        message: e.to_string(),
    }
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandProblem> {
    let re = shell_pattern_to_regex(pattern, greedy, true).map_err(bad_pattern(pattern))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Regexes find leftmost matches, so the shortest/longest suffix is found by
/// reversing both the value and the pattern (keeping escapes attached).
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandProblem> {
    let rev_value: String = value.chars().rev().collect();
    let rev = trim_prefix(&reverse_pattern(pattern), &rev_value, greedy)?;
    Ok(rev.chars().rev().collect())
}

fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push(format!("\\{}", chars[i + 1]));
            i += 2;
        } else {
            units.push(chars[i].to_string());
            i += 1;
        }
    }
    units.reverse();
    units.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(w: &str) -> Result<String, ExpandError> {
        let env = |k: &str| match k {
            "FILE" => Some("dir/sub/file.tar.gz".to_string()),
            "V" => Some("aXbXc".to_string()),
            _ => None,
        };
        Lex::default().process_word(w, &env)
    }

    #[test]
    fn prefix_and_suffix_removal() {
        assert_eq!(expand("${FILE#*/}").unwrap(), "sub/file.tar.gz");
        assert_eq!(expand("${FILE##*/}").unwrap(), "file.tar.gz");
        assert_eq!(expand("${FILE%.*}").unwrap(), "dir/sub/file.tar");
        assert_eq!(expand("${FILE%%.*}").unwrap(), "dir/sub/file");
        assert_eq!(expand("${UNSET#x}").unwrap(), "");
    }

    #[test]
    fn substitution() {
        assert_eq!(expand("${V/X/-}").unwrap(), "a-bXc");
        assert_eq!(expand("${V//X/-}").unwrap(), "a-b-c");
        assert_eq!(expand("${V//X/}").unwrap(), "abc");
        assert_eq!(expand("${FILE/*\\//}").unwrap(), "file.tar.gz");
        assert!(expand("${V/X").is_err());
    }

    #[test]
    fn unset_vs_empty_error_messages() {
        let e = expand("${NOPE:?must be set}").unwrap_err();
        assert!(e.problem.to_string().contains("NOPE: must be set"), "{e}");
    }
}
