//! Resolving `--chown` and USER names through the image's own /etc/passwd
//! and /etc/group, as docker does (never the host's).

use crate::fstree::{FsTree, NodeKind};
use kiln_layer::Content;
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {name}: {reason}")]
    NoUser { name: String, reason: String },
    #[error("unable to find group {name}: {reason}")]
    NoGroup { name: String, reason: String },
    #[error("invalid user/group {0:?}")]
    Invalid(String),
}

/// Read a small text file of the tree.
fn read_text(tree: &FsTree, path: &str) -> Option<String> {
    let resolved = tree.resolve(path, true).ok()?;
    let node = tree.get(&resolved)?;
    let NodeKind::File { content, .. } = &node.kind else {
        return None;
    };
    match content {
        Content::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Content::Path(p) => {
            let mut s = String::new();
            std::fs::File::open(p)
                .ok()?
                .take(16 << 20)
                .read_to_string(&mut s)
                .ok()?;
            Some(s)
        }
    }
}

fn lookup(text: &str, name: &str) -> Option<Vec<String>> {
    text.lines()
        .map(|l| l.split(':').map(String::from).collect::<Vec<_>>())
        .find(|f| f.first().map(String::as_str) == Some(name))
}

/// `user[:group]` to numeric ids. A numeric user without a group uses the
/// same number as its group; a named user without a group its primary group.
pub fn resolve_chown(tree: &FsTree, spec: &str) -> Result<(u64, u64), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let (uid, primary_gid) = match user.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) => {
            let passwd = read_text(tree, "/etc/passwd").ok_or_else(|| UserError::NoUser {
                name: user.to_string(),
                reason: "the image has no /etc/passwd".into(),
            })?;
            let fields = lookup(&passwd, user).ok_or_else(|| UserError::NoUser {
                name: user.to_string(),
                reason: "no such user in the image's /etc/passwd".into(),
            })?;
            let uid = fields.get(2).and_then(|s| s.parse().ok());
            let gid = fields.get(3).and_then(|s| s.parse().ok());
            match (uid, gid) {
                (Some(u), Some(g)) => (u, g),
                _ => return Err(UserError::Invalid(format!("/etc/passwd entry for {user}"))),
            }
        }
    };
    let gid = match group {
        None => primary_gid,
        Some("") => return Err(UserError::Invalid(spec.to_string())),
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read_text(tree, "/etc/group").ok_or_else(|| UserError::NoGroup {
                    name: g.to_string(),
                    reason: "the image has no /etc/group".into(),
                })?;
                let fields = lookup(&groups, g).ok_or_else(|| UserError::NoGroup {
                    name: g.to_string(),
                    reason: "no such group in the image's /etc/group".into(),
                })?;
                fields
                    .get(2)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| UserError::Invalid(format!("/etc/group entry for {g}")))?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fstree::Node;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn with_file(tree: &mut FsTree, path: &str, text: &str) {
        let inode = tree.new_inode();
        let dir = Node {
            kind: NodeKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
            inode,
        };
        tree.mkdir_all("/etc", &mut |_| dir.clone()).unwrap();
        tree.insert(
            path,
            Node {
                kind: NodeKind::File {
                    content: Content::Bytes(Arc::new(text.as_bytes().to_vec())),
                    size: text.len() as u64,
                },
                ..dir.clone()
            },
        )
        .unwrap();
    }

    #[test]
    fn chown_forms() {
        let mut t = FsTree::new(0);
        assert_eq!(resolve_chown(&t, "10").unwrap(), (10, 10));
        assert_eq!(resolve_chown(&t, "10:20").unwrap(), (10, 20));
        let err = resolve_chown(&t, "app").unwrap_err().to_string();
        assert!(err.contains("app") && err.contains("/etc/passwd"), "{err}");
        with_file(
            &mut t,
            "/etc/passwd",
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        );
        with_file(&mut t, "/etc/group", "root:x:0:\nstaff:x:50:\n");
        assert_eq!(resolve_chown(&t, "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_chown(&t, "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_chown(&t, "7:staff").unwrap(), (7, 50));
        assert!(resolve_chown(&t, "app:nogroup").is_err());
        assert!(resolve_chown(&t, "nobody").is_err());
    }
}
