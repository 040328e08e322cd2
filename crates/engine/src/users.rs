//! Resolving `--chown` and USER names through the image's own /etc/passwd
//! and /etc/group, as docker does (never the host's).

use crate::fstree::{FileKind, FsTree};
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
    let FileKind::File { content, .. } = &node.kind else {
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

/// The owner BuildKit's file operations give for `USER` (WORKDIR's new
/// directories; moby/buildkit solver/llbsolver/file/user_linux.go): a
/// number is uid and gid; a name is its passwd entry, or 0:0 when there is
/// none.
/// Whether `spec` (`user[:group]`, as USER and `--chown` take it) names a
/// user or group that only the image's /etc/passwd or /etc/group can
/// turn into a number (a word still to expand counts as a name).
pub fn names_someone(spec: &str) -> bool {
    spec.split(':')
        .any(|part| !part.is_empty() && !part.bytes().all(|b| b.is_ascii_digit()))
}

pub fn file_owner(tree: &FsTree, spec: &str) -> (u64, u64) {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let by_name = |file: &str, name: &str, field: usize| -> u64 {
        read_text(tree, file)
            .and_then(|t| lookup(&t, name))
            .and_then(|f| f.get(field).and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    let (uid, mut gid) = match user.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) if user.is_empty() => (0, 0),
        Err(_) => (
            by_name("/etc/passwd", user, 2),
            by_name("/etc/passwd", user, 3),
        ),
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = g
            .parse::<u64>()
            .unwrap_or_else(|_| by_name("/etc/group", g, 2));
    }
    (uid, gid)
}

/// Who a RUN step runs as, as runc resolves `USER` through the image's
/// own /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary group first, then the groups listing the user by name.
    pub groups: Vec<u32>,
    /// The passwd entry's home; `/root` for root and `/` for a user with
    /// no entry (BuildKit's HOME).
    pub home: String,
}

/// The user a RUN step (or WORKDIR) runs as: `USER` as written. A name
/// must be in /etc/passwd (but `root` works without one); a number with no
/// entry runs with group 0, as runc does; `:group` overrides the primary
/// group. Empty means root.
pub fn resolve_user(tree: &FsTree, spec: &str) -> Result<RunUser, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "root" } else { user };
    let passwd = read_text(tree, "/etc/passwd").unwrap_or_default();
    let entries: Vec<Vec<&str>> = passwd.lines().map(|l| l.split(':').collect()).collect();
    let entry = match user.parse::<u64>() {
        Ok(n) => entries
            .iter()
            .find(|f| f.get(2).and_then(|s| s.parse::<u64>().ok()) == Some(n)),
        Err(_) => entries.iter().find(|f| f.first() == Some(&user)),
    };
    let (uid, primary, name, home) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f.get(2).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0),
            f.get(3).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0),
            f.first().map(|s| s.to_string()).unwrap_or_default(),
            f.get(5).filter(|h| !h.is_empty()).map(|h| h.to_string()),
        ),
        (None, Ok(n)) => (n, 0, String::new(), None),
        (None, Err(_)) if user == "root" => (0, 0, "root".to_string(), None),
        (None, Err(_)) => {
            return Err(UserError::NoUser {
                name: user.to_string(),
                reason: if passwd.is_empty() {
                    "the image has no /etc/passwd".into()
                } else {
                    "no such user in /etc/passwd".into()
                },
            })
        }
    };
    let home = home.unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
    let gid = match group {
        None | Some("") => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read_text(tree, "/etc/group").unwrap_or_default();
                groups
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.first() == Some(&g))
                    .and_then(|f| f.get(2).and_then(|s| s.parse::<u32>().ok()))
                    .ok_or_else(|| UserError::NoGroup {
                        name: g.to_string(),
                        reason: "no such group in /etc/group".into(),
                    })?
            }
        },
    };
    let mut groups = vec![gid];
    if !name.is_empty() && group.is_none() {
        if let Some(text) = read_text(tree, "/etc/group") {
            for l in text.lines() {
                let f: Vec<&str> = l.split(':').collect();
                if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                    if let Ok(g) = f[2].parse::<u32>() {
                        if !groups.contains(&g) {
                            groups.push(g);
                        }
                    }
                }
            }
        }
    }
    Ok(RunUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fstree::Node;
    use std::sync::Arc;

    #[test]
    fn names_someone_is_any_part_that_is_not_a_number() {
        for spec in ["", "0", "1000:1000", "1000:", ":50"] {
            assert!(!names_someone(spec), "{spec}");
        }
        for spec in ["app", "1000:staff", "app:1", "$UID", "${U}:0"] {
            assert!(names_someone(spec), "{spec}");
        }
    }

    fn with_file(tree: &mut FsTree, path: &str, text: &str) {
        let inode = tree.new_inode();
        let dir = Node {
            kind: FileKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Default::default(),
            inode,
        };
        tree.mkdir_all("/etc", &mut |_| dir.clone()).unwrap();
        tree.insert(
            path,
            Node {
                kind: FileKind::File {
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
