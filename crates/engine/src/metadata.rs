//! Config details docker defines: shell-form wrapping, EXPOSE parsing, and
//! history text in Go's `%q` style.

use kiln_dockerfile::dump::go_quote;
use kiln_dockerfile::Command;
use kiln_image::ContainerConfig;

/// Exec form as is; shell form run through SHELL (default `/bin/sh -c`).
pub fn shell_wrap(config: &ContainerConfig, c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = config
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]);
            v.push(s.clone());
            v
        }
    }
}

/// `["a" "b"]`, as Go prints a `%q` slice.
pub fn go_quoted_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

/// An EXPOSE word that names no port (docker's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid proto: {0}")]
    Protocol(String),
    #[error("invalid containerPort: {0}")]
    Port(String),
    #[error("invalid range specified for containerPort: {0}")]
    Range(String),
}

/// EXPOSE words to `port/proto` keys, ranges expanded, protocol default tcp.
pub fn expose_ports(words: &[String]) -> Result<Vec<String>, PortError> {
    let mut out = Vec::new();
    for w in words {
        for word in w.split_whitespace() {
            let (ports, proto) = match word.split_once('/') {
                Some((p, proto)) => (p, proto.to_ascii_lowercase()),
                None => (word, "tcp".to_string()),
            };
            if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                return Err(PortError::Protocol(proto));
            }
            // `ip:host:container` forms keep only the container port.
            let ports = ports.rsplit(':').next().unwrap_or(ports);
            let (lo, hi) = match ports.split_once('-') {
                Some((a, b)) => (a, b),
                None => (ports, ports),
            };
            let parse = |p: &str| {
                p.parse::<u16>()
                    .map_err(|_| PortError::Port(ports.to_string()))
            };
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if hi < lo {
                return Err(PortError::Range(ports.to_string()));
            }
            for p in lo..=hi {
                out.push(format!("{p}/{proto}"));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(
            expose_ports(&["80".into(), "90/UDP".into()]).unwrap(),
            vec!["80/tcp", "90/udp"]
        );
        assert_eq!(
            expose_ports(&["8000-8002".into()]).unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expose_ports(&["http".into()]).is_err());
        assert!(expose_ports(&["80/xyz".into()]).is_err());
    }

    #[test]
    fn wrap() {
        let mut c = ContainerConfig::default();
        assert_eq!(
            shell_wrap(&c, &Command::Shell("echo hi".into())),
            vec!["/bin/sh", "-c", "echo hi"]
        );
        c.shell = Some(vec!["/bin/bash".into(), "-ec".into()]);
        assert_eq!(
            shell_wrap(&c, &Command::Shell("x".into())),
            vec!["/bin/bash", "-ec", "x"]
        );
        assert_eq!(
            shell_wrap(&c, &Command::Exec(vec!["/a".into()])),
            vec!["/a"]
        );
        assert_eq!(
            go_quoted_list(&["a b".into(), "\"".into()]),
            r#"["a b" "\""]"#
        );
    }
}
