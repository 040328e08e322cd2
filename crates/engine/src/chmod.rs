//! `COPY/ADD --chmod`: an octal mode, or a symbolic one as chmod(1) and
//! BuildKit take it (`u+x,go-w`, `a=rX`, `g=u`): classes u, g, o, a (none
//! means a), operators + - =, permissions r w x X s t or a class to copy.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Which classes: bit 0 u, 1 g, 2 o.
    who: u8,
    actions: Vec<(char, Perms)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perms {
    Bits(String),
    Copy(char),
}

const CLASSES: [(u8, u32); 3] = [(1, 6), (2, 3), (4, 0)];

/// A `--chmod` value that is neither octal nor symbolic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod={text}: expected an octal mode such as 0755 or a symbolic one such as u+x,go-w")]
pub struct ChmodError {
    pub text: String,
}

impl Chmod {
    pub fn parse(text: &str) -> Result<Chmod, ChmodError> {
        let bad = || ChmodError {
            text: text.to_string(),
        };
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(text, 8)
                .ok()
                .filter(|v| *v <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(bad);
        }
        let mut clauses = Vec::new();
        for part in text.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0u8;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 1,
                    'g' => 2,
                    'o' => 4,
                    'a' => 7,
                    _ => break,
                };
                chars.next();
            }
            let mut actions = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad());
                }
                let mut perms = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, '+' | '-' | '=') {
                        break;
                    }
                    perms.push(c);
                    chars.next();
                }
                let perms = match perms.as_str() {
                    "u" | "g" | "o" => Perms::Copy(perms.chars().next().unwrap_or('u')),
                    p if p.chars().all(|c| "rwxXst".contains(c)) => Perms::Bits(p.to_string()),
                    _ => return Err(bad()),
                };
                actions.push((op, perms));
            }
            if actions.is_empty() {
                return Err(bad());
            }
            clauses.push(Clause {
                who: if who == 0 { 7 } else { who },
                actions,
            });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a file (or directory) of mode `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for clause in clauses {
            for (op, perms) in &clause.actions {
                let mut add = 0u32;
                for (bit, shift) in CLASSES {
                    if clause.who & bit == 0 {
                        continue;
                    }
                    let rwx = match perms {
                        Perms::Copy(from) => {
                            let s = match from {
                                'u' => 6,
                                'g' => 3,
                                _ => 0,
                            };
                            (mode >> s) & 7
                        }
                        Perms::Bits(p) => {
                            let mut v = 0;
                            for c in p.chars() {
                                v |= match c {
                                    'r' => 4,
                                    'w' => 2,
                                    'x' => 1,
                                    'X' if is_dir || mode & 0o111 != 0 => 1,
                                    _ => 0,
                                };
                            }
                            v
                        }
                    };
                    add |= rwx << shift;
                    if let Perms::Bits(p) = perms {
                        if p.contains('s') {
                            add |= match bit {
                                1 => 0o4000,
                                2 => 0o2000,
                                _ => 0,
                            };
                        }
                        if p.contains('t') && bit == 4 {
                            add |= 0o1000;
                        }
                    }
                }
                match op {
                    '+' => mode |= add,
                    '-' => mode &= !add,
                    _ => {
                        let mut clear = 0u32;
                        for (bit, shift) in CLASSES {
                            if clause.who & bit != 0 {
                                clear |= 7 << shift;
                                clear |= match bit {
                                    1 => 0o4000,
                                    2 => 0o2000,
                                    _ => 0o1000,
                                };
                            }
                        }
                        mode = (mode & !clear) | add;
                    }
                }
            }
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(s).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic_modes() {
        assert_eq!(sym("0751", 0o644, false), 0o751);
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("u+x,go-w", 0o666, false), 0o744);
        assert_eq!(sym("a=rX", 0o640, false), 0o444);
        assert_eq!(sym("a=rX", 0o640, true), 0o555);
        assert_eq!(sym("a=rX", 0o740, false), 0o555);
        assert_eq!(sym("+x", 0o600, false), 0o711);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("u+s,o+t", 0o755, true), 0o5755);
        assert_eq!(sym("go=", 0o777, false), 0o700);
        for bad in ["u+q", "z+x", "u", "", "99999", "u+x,"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
