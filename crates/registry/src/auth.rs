//! Registry authentication: credentials from docker's config.json (auths,
//! credsStore, credHelpers, identity tokens) and the challenge flow of the
//! distribution spec (Bearer token service, or Basic). Secrets are never
//! formatted into errors or logs; `Credential`'s Debug hides them.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in config.json).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

/// Credentials docker's configuration has but cannot give.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The helper (`docker-credential-NAME`) failed; its output may hold
    /// secrets: it is named, not quoted.
    #[error("credential helper {helper} failed for {registry}")]
    Helper { helper: String, registry: String },
    #[error("reading credentials for {registry}")]
    Read {
        registry: String,
        #[source]
        source: docker_credential::CredentialRetrievalError,
    },
}

/// Credentials for `registry` (host[:port]) from docker's configuration
/// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). `None`
/// when nothing is configured; a failing credential helper is an error.
pub fn lookup_credential(registry: &str) -> Result<Option<Credential>, CredentialError> {
    let keys: Vec<&str> = if registry == crate::reference::DOCKER_HUB {
        vec![
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
        ]
    } else {
        vec![registry]
    };
    for key in keys {
        match docker_credential::get_credential(key) {
            Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Some(Credential::Basic { username, password }))
            }
            Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
                return Ok(Some(Credential::IdentityToken(t)))
            }
            Err(docker_credential::CredentialRetrievalError::NoCredentialConfigured)
            | Err(docker_credential::CredentialRetrievalError::ConfigNotFound)
            | Err(docker_credential::CredentialRetrievalError::ConfigReadError) => continue,
            Err(docker_credential::CredentialRetrievalError::HelperFailure { helper, .. }) => {
                return Err(CredentialError::Helper {
                    helper,
                    registry: registry.to_string(),
                });
            }
            Err(source) => {
                return Err(CredentialError::Read {
                    registry: registry.to_string(),
                    source,
                })
            }
        }
    }
    Ok(None)
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

/// Parse `Bearer realm="...",service="...",scope="..."` or `Basic realm=...`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        i += 1;
        let mut value = String::new();
        if i < chars.len() && chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && chars[i] != ',' {
                value.push(chars[i]);
                i += 1;
            }
        }
        if !key.is_empty() {
            out.insert(key, value.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::IdentityToken("tok".into())).contains("tok"));
    }
}
