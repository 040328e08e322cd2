//! An instruction's `--name[=value]` flags, checked against the ones it
//! takes (BuildKit's BFlags): unknown, duplicate and valueless flags are
//! errors.

use crate::invalid::Invalid;
use crate::parser::Node;

/// Parsed `--name[=value]` flags of one instruction.
pub(crate) struct Flags {
    items: Vec<(String, Option<String>)>,
}

impl Flags {
    pub(crate) fn parse(node: &Node, allowed: &[&str]) -> Result<Flags, Invalid> {
        let mut items = Vec::new();
        for raw in &node.flags {
            let body = raw.strip_prefix("--").unwrap_or(raw);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if !allowed.contains(&name) {
                return Err(Invalid::UnknownFlag {
                    flag: name.to_string(),
                    instruction: node.keyword.to_uppercase(),
                });
            }
            items.push((name.to_string(), value));
        }
        Ok(Flags { items })
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, Invalid> {
        let mut found = None;
        for (n, v) in &self.items {
            if n == name {
                if found.is_some() {
                    return Err(Invalid::DuplicateFlag(name.to_string()));
                }
                found = Some(
                    v.clone()
                        .ok_or_else(|| Invalid::FlagWithoutValue(name.to_string()))?,
                );
            }
        }
        Ok(found)
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, Invalid> {
        self.items
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| {
                v.clone()
                    .ok_or_else(|| Invalid::FlagWithoutValue(name.to_string()))
            })
            .collect()
    }

    pub(crate) fn bool(&self, name: &str) -> Result<bool, Invalid> {
        match self.string_or_flag(name) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(Invalid::NotBool {
                    flag: name.to_string(),
                    value: v,
                }),
            },
        }
    }

    pub(crate) fn string_or_flag(&self, name: &str) -> Option<Option<String>> {
        self.items
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}
