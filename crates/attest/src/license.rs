//! Licenses as packages state them, made into SPDX license expressions:
//! identifiers SPDX lists stay; Debian's short names map to theirs; any
//! other name becomes a `LicenseRef-` that the document declares.

/// SPDX license list identifiers common in images (a name outside this
/// list is declared as a LicenseRef rather than guessed).
const KNOWN: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "curl",
    "EPL-1.0",
    "EPL-2.0",
    "FSFAP",
    "FSFUL",
    "FSFULLR",
    "FTL",
    "GFDL-1.2-or-later",
    "GFDL-1.3-or-later",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ICU",
    "IJG",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "Libpng",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "NCSA",
    "OpenSSL",
    "PHP-3.01",
    "PostgreSQL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "Sleepycat",
    "TCL",
    "Unicode-DFS-2016",
    "Unicode-3.0",
    "Unlicense",
    "UPL-1.0",
    "Vim",
    "W3C",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
    "GCC-exception-3.1",
    "Classpath-exception-2.0",
    "LLVM-exception",
    "Autoconf-exception-3.0",
];

/// Debian's DEP-5 short names (and other common spellings) to SPDX.
const ALIASES: &[(&str, &str)] = &[
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("GFDL-1.2+", "GFDL-1.2-or-later"),
    ("GFDL-1.3+", "GFDL-1.3-or-later"),
    ("Expat", "MIT"),
    ("MIT License", "MIT"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("Apache-2", "Apache-2.0"),
    ("Apache License 2.0", "Apache-2.0"),
    ("Apache Software License", "Apache-2.0"),
    ("MPL-2", "MPL-2.0"),
    ("zlib", "Zlib"),
    ("Artistic", "Artistic-1.0-Perl"),
    ("PSF", "PSF-2.0"),
    ("ISC License (ISCL)", "ISC"),
];

fn known(id: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(id))
        .copied()
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == id).map(|(_, s)| *s))
}

/// `LicenseRef-` and the name with every character SPDX refuses as `-`.
pub fn license_ref(name: &str) -> String {
    format!(
        "LicenseRef-{}",
        crate::spdx::idstring(name).trim_matches('-')
    )
}

/// One Debian license field ("GPL-2+ or Artistic", "BSD-3-clause") as an
/// expression: `or`/`and` become OR/AND, each name an id or a reference.
pub fn debian_to_expression(field: &str) -> String {
    let mut out = Vec::new();
    for word in field.split_whitespace() {
        match word.to_ascii_lowercase().trim_matches(',') {
            "or" => out.push("OR".to_string()),
            "and" => out.push("AND".to_string()),
            "with" => out.push("WITH".to_string()),
            _ => out.push(word.trim_matches(',').to_string()),
        }
    }
    to_expression(&out.join(" "))
}

/// A stated license as an SPDX expression. Returns the expression and the
/// LicenseRefs it uses (which the document must declare).
pub fn expression(stated: &str) -> (String, Vec<(String, String)>) {
    let expr = to_expression(stated);
    let refs = expr
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| t.starts_with("LicenseRef-"))
        .map(|t| (t.to_string(), stated.to_string()))
        .collect();
    (expr, refs)
}

fn to_expression(stated: &str) -> String {
    let stated = stated.trim();
    // The whole text is one name ("MIT License", "Apache Software License").
    if let Some(id) = known(stated) {
        return id.to_string();
    }
    let tokens: Vec<&str> = stated
        .split_whitespace()
        .flat_map(|t| split_parens(t))
        .collect();
    let is_op = |t: &str| matches!(t, "AND" | "OR" | "WITH" | "(" | ")");
    let names_ok = tokens
        .iter()
        .all(|t| is_op(t) || known(t).is_some() || t.starts_with("LicenseRef-"));
    let binary = |t: &str| matches!(t, "AND" | "OR" | "WITH");
    let well_formed = !tokens.is_empty()
        && !binary(tokens[0])
        && !binary(tokens[tokens.len() - 1])
        && tokens.windows(2).all(|w| !(binary(w[0]) && binary(w[1])));
    if names_ok && well_formed {
        return tokens
            .iter()
            .map(|t| match is_op(t) {
                true => t.to_string(),
                false => known(t).map(String::from).unwrap_or_else(|| t.to_string()),
            })
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(")
            .replace(" )", ")");
    }
    // Names joined by AND/OR where some are unknown: each one a reference.
    if tokens.len() > 1
        && tokens.iter().any(|t| matches!(*t, "AND" | "OR"))
        && !tokens.iter().any(|t| matches!(*t, "(" | ")" | "WITH"))
    {
        let mut parts = Vec::new();
        let mut name: Vec<&str> = Vec::new();
        for t in tokens.iter().chain(std::iter::once(&"AND")) {
            if matches!(*t, "AND" | "OR") {
                if name.is_empty() {
                    return license_ref(stated);
                }
                let n = name.join(" ");
                parts.push(
                    known(&n)
                        .map(String::from)
                        .unwrap_or_else(|| license_ref(&n)),
                );
                parts.push(t.to_string());
                name.clear();
            } else {
                name.push(t);
            }
        }
        parts.pop();
        return parts.join(" ");
    }
    license_ref(stated)
}

fn split_parens(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(r) = rest.strip_prefix('(') {
        out.push("(");
        rest = r;
    }
    let mut closing = 0;
    while let Some(r) = rest.strip_suffix(')') {
        closing += 1;
        rest = r;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out.extend(std::iter::repeat_n(")", closing));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stated_licenses_become_expressions() {
        assert_eq!(expression("MIT").0, "MIT");
        assert_eq!(expression("MIT License").0, "MIT");
        assert_eq!(expression("(MIT OR Apache-2.0)").0, "(MIT OR Apache-2.0)");
        assert_eq!(
            debian_to_expression("GPL-2+ or Artistic"),
            "GPL-2.0-or-later OR Artistic-1.0-Perl"
        );
        assert_eq!(expression("public-domain").0, "LicenseRef-public-domain");
        assert_eq!(expression("BSD License").0, "LicenseRef-BSD-License");
        let (e, refs) = expression("Foo AND MIT");
        assert_eq!(e, "LicenseRef-Foo AND MIT");
        assert_eq!(refs.len(), 1);
    }
}
