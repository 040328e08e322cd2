//! The per-instruction argument parsers, following BuildKit's
//! `frontend/dockerfile/parser/line_parsers.go` so that the tree (and its
//! `result` dump) is the same byte for byte.

use crate::invalid::Invalid;

/// Arguments of one instruction as the parser produces them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub args: Vec<String>,
    pub json: bool,
}

pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `reWhitespace` (`[\t\v\f\r ]+`).
pub(crate) fn is_ws_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// `regexp.Split(rest, -1)` with `[\t\v\f\r ]+`, including its empty edges.
pub(crate) fn split_ws(rest: &str, limit: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_ws_sep(c) {
            if limit.is_some_and(|l| out.len() + 1 == l) {
                cur.push_str(&rest[i..]);
                out.push(cur);
                return out;
            }
            while chars.peek().is_some_and(|&(_, c)| is_ws_sep(c)) {
                chars.next();
            }
            out.push(std::mem::take(&mut cur));
            if limit.is_some_and(|l| out.len() + 1 == l) {
                if let Some(&(j, _)) = chars.peek() {
                    out.push(rest[j..].to_string());
                } else {
                    out.push(String::new());
                }
                return out;
            }
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Words separated by whitespace, quotes and escapes kept in the words.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space(ch) {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// ENV and LABEL: `KEY value` (legacy) or `k=v k2=v2`. Each pair yields
/// key, value and separator.
pub(crate) fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Parsed, Invalid> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Parsed::default());
    }
    if !words[0].contains('=') {
        let parts = split_ws(rest, Some(2));
        if parts.len() < 2 {
            return Err(Invalid::NeedsTwoArguments(key.to_string()));
        }
        return Ok(Parsed {
            args: vec![parts[0].clone(), parts[1].clone(), String::new()],
            json: false,
        });
    }
    let mut args = Vec::new();
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(Invalid::NoEquals(word));
        };
        args.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(Parsed { args, json: false })
}

pub(crate) fn parse_name_or_name_val(rest: &str, escape: char) -> Parsed {
    Parsed {
        args: parse_words(rest, escape),
        json: false,
    }
}

pub(crate) fn parse_strings_whitespace_delimited(rest: &str) -> Parsed {
    if rest.is_empty() {
        return Parsed::default();
    }
    let mut args = split_ws(rest, None);
    // BuildKit drops a trailing empty element produced by the split.
    if args.len() > 1 && args.last().is_some_and(|s| s.is_empty()) {
        args.pop();
    }
    Parsed { args, json: false }
}

pub(crate) fn parse_string(rest: &str) -> Parsed {
    if rest.is_empty() {
        return Parsed::default();
    }
    Parsed {
        args: vec![rest.to_string()],
        json: false,
    }
}

pub(crate) enum JsonOutcome {
    Array(Vec<String>),
    NotJson,
    NotStringArray,
}

pub(crate) fn parse_json(rest: &str) -> JsonOutcome {
    let rest = rest.trim_start_matches(is_space);
    if !rest.starts_with('[') {
        return JsonOutcome::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Err(_) => JsonOutcome::NotJson,
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return JsonOutcome::NotStringArray,
                }
            }
            JsonOutcome::Array(out)
        }
    }
}

pub(crate) fn parse_maybe_json(rest: &str) -> Result<Parsed, Invalid> {
    if rest.is_empty() {
        return Ok(Parsed::default());
    }
    match parse_json(rest) {
        JsonOutcome::Array(args) => Ok(Parsed { args, json: true }),
        JsonOutcome::NotStringArray => Err(Invalid::NotStringArray),
        JsonOutcome::NotJson => Ok(Parsed {
            args: vec![rest.to_string()],
            json: false,
        }),
    }
}

pub(crate) fn parse_maybe_json_to_list(rest: &str) -> Result<Parsed, Invalid> {
    match parse_json(rest) {
        JsonOutcome::Array(args) => Ok(Parsed { args, json: true }),
        JsonOutcome::NotStringArray => Err(Invalid::NotStringArray),
        JsonOutcome::NotJson => Ok(parse_strings_whitespace_delimited(rest)),
    }
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`) then a maybe-JSON command.
pub(crate) fn parse_health_config(rest: &str) -> Result<Parsed, Invalid> {
    let sep = rest.find(is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Parsed::default());
    }
    let after = rest[sep..].trim_start_matches(is_space);
    let cmd = parse_maybe_json(after)?;
    let mut args = vec![rest[..sep].to_string()];
    args.extend(cmd.args);
    Ok(Parsed {
        args,
        json: cmd.json,
    })
}

/// Leading `--flag` words of an instruction; returns the flags and the rest.
pub(crate) fn extract_builder_flags(line: &str) -> (Vec<String>, String) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    let rest_from = |p: usize| chars[p..].iter().collect::<String>();
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space(ch) {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == chars.len() || chars[pos + 1] != '-' {
                return (words, rest_from(pos));
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                // `--` ends the flags; it and the space after it are dropped
                // (BuildKit's parser testfile `flags`).
                if word == "--" {
                    return (words, rest_from(pos).trim_start().to_string());
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == '\\' {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == '\\' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    (words, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ws_limits() {
        assert_eq!(split_ws("a  b c", Some(2)), vec!["a", "b c"]);
        assert_eq!(split_ws("a", Some(2)), vec!["a"]);
        assert_eq!(split_ws("a b ", None), vec!["a", "b", ""]);
    }

    #[test]
    fn flags_are_extracted() {
        let (f, rest) = extract_builder_flags("--from=build --chown=1:1 src /dst/");
        assert_eq!(f, vec!["--from=build", "--chown=1:1"]);
        assert_eq!(rest, "src /dst/");
        let (f, rest) = extract_builder_flags("-- --notaflag x");
        assert!(f.is_empty());
        assert_eq!(rest, "--notaflag x");
    }
}
