//! The HTTP side of the distribution API: one connection pool per registry
//! (its own TLS settings), authentication on demand (a 401 answers with a
//! challenge; kiln gets a token or uses Basic and asks again), and retries
//! with bounded exponential backoff for transient failures.

use crate::auth::{lookup_credential, parse_challenge, Challenge, Credential};
use crate::reference::Reference;
use crate::RegistryError;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How kiln reaches registries (Kaniko's flag names in comments).
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `--insecure`: plain HTTP for every registry.
    pub insecure: bool,
    /// `--insecure-registry R`.
    pub insecure_registries: Vec<String>,
    /// `--skip-tls-verify`.
    pub skip_tls_verify: bool,
    /// `--skip-tls-verify-registry R`.
    pub skip_tls_verify_registries: Vec<String>,
    /// `--registry-certificate R=PATH`: extra CA certificates (PEM).
    pub certificates: Vec<(String, PathBuf)>,
    /// `--registry-client-cert R=CERT,KEY`: client certificates for mutual
    /// TLS (PEM).
    pub client_certificates: Vec<(String, PathBuf, PathBuf)>,
    /// `--registry-mirror`: mirrors of docker.io, tried in order.
    pub mirrors: Vec<String>,
    /// `--registry-map ORIG=M1;M2`.
    pub registry_maps: Vec<(String, Vec<String>)>,
    /// `--skip-default-registry-fallback`: never fall back from mirrors.
    pub skip_default_registry_fallback: bool,
    /// `--image-download-retry`: extra attempts for pulls.
    pub pull_retries: u32,
    /// `--push-retry`: extra attempts for pushes.
    pub push_retries: u32,
    /// Credentials by registry, used before docker's config (tests, CLI).
    pub credentials: Vec<(String, Credential)>,
    /// `--registry-timeout`: how long a registry may leave kiln waiting
    /// for an answer, or for the next bytes of one (default 60 s); an
    /// upload may take longer while its bytes keep being acknowledged.
    pub timeout: Option<Duration>,
}

/// How long a registry may stay silent by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A request timeout for uploads, which take as long as their bytes take:
/// a stalled connection is caught by TCP_USER_TIMEOUT instead.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl RegistryOptions {
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure || self.insecure_registries.iter().any(|r| r == registry)
    }

    fn skip_tls(&self, registry: &str) -> bool {
        self.skip_tls_verify
            || self
                .skip_tls_verify_registries
                .iter()
                .any(|r| r == registry)
    }
}

/// Pull or push: which retry budget and token scope applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

pub struct Client {
    pub options: RegistryOptions,
    /// Authorization header values by (registry, scope).
    auth: Mutex<HashMap<(String, String), HeaderValue>>,
}

/// One request to make (again) against a registry.
pub struct Call<'a> {
    pub registry: &'a str,
    pub api_host: &'a str,
    /// Token scopes, e.g. `repository:library/debian:pull`.
    pub scopes: Vec<String>,
    pub access: Access,
    /// What the request is for, in errors ("manifest docker.io/...").
    pub what: String,
}

impl Client {
    pub fn new(options: RegistryOptions) -> Client {
        Client {
            options,
            auth: Mutex::new(HashMap::new()),
        }
    }

    /// The connection pool for `registry`, made once per process for its
    /// TLS settings: making one reads the system's CA store (tens of
    /// milliseconds), and one build makes several `Client`s.
    fn http(&self, registry: &str) -> Result<Http, RegistryError> {
        static POOLS: std::sync::OnceLock<Mutex<HashMap<String, Http>>> =
            std::sync::OnceLock::new();
        let settings = format!(
            "{registry}\0{:?}\0{}\0{:?}\0{:?}",
            self.options.timeout,
            self.options.skip_tls(registry),
            self.options
                .certificates
                .iter()
                .filter(|(r, _)| r == registry)
                .collect::<Vec<_>>(),
            self.options
                .client_certificates
                .iter()
                .filter(|(r, _, _)| r == registry)
                .collect::<Vec<_>>()
        );
        let mut pool = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(h) = pool.get(&settings) {
            return Ok(h.clone());
        }
        let idle = self.options.timeout.unwrap_or(DEFAULT_TIMEOUT);
        // The timeout bounds the wait for an answer and each read of its
        // body: a registry that stops answering is an error, not a hang.
        let mut b = Http::builder()
            .connect_timeout(idle.min(Duration::from_secs(30)))
            .timeout(idle)
            .tcp_user_timeout(idle)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(self.options.skip_tls(registry));
        for (r, path) in &self.options.certificates {
            if r == registry {
                let pem = std::fs::read(path).map_err(|e| {
                    RegistryError::Config(format!(
                        "reading CA certificate {} for {registry}: {e}",
                        path.display()
                    ))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    RegistryError::Config(format!(
                        "CA certificate {} for {registry}: {e}",
                        path.display()
                    ))
                })?;
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
        }
        for (r, cert, key) in &self.options.client_certificates {
            if r == registry {
                let mut pem = Vec::new();
                for p in [cert, key] {
                    let bytes = std::fs::read(p).map_err(|e| {
                        RegistryError::Config(format!(
                            "reading client certificate {} for {registry}: {e}",
                            p.display()
                        ))
                    })?;
                    pem.extend_from_slice(&bytes);
                    pem.push(b'\n');
                }
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    RegistryError::Config(format!(
                        "client certificate {} for {registry}: {e}",
                        cert.display()
                    ))
                })?;
                b = b.identity(identity);
            }
        }
        let h = b
            .build()
            .map_err(|e| RegistryError::Config(format!("HTTP client for {registry}: {e}")))?;
        pool.insert(settings, h.clone());
        Ok(h)
    }

    /// Base URL of a registry's API.
    pub fn base_url(&self, registry: &str, api_host: &str) -> String {
        let scheme = if self.options.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{api_host}")
    }

    fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some((_, c)) = self.options.credentials.iter().find(|(r, _)| r == registry) {
            return Ok(Some(c.clone()));
        }
        lookup_credential(registry).map_err(RegistryError::Credential)
    }

    /// Send the request `make` builds (called again for each attempt, so
    /// bodies are fresh), authenticating and retrying as needed.
    pub fn send(
        &self,
        call: &Call,
        make: &dyn Fn(&Http, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let retries = match call.access {
            Access::Pull => self.options.pull_retries,
            Access::Push => self.options.push_retries,
        };
        self.send_tries(call, make, retries)
    }

    /// [`Client::send`] without retries, for a body that can be sent once.
    pub fn send_once(
        &self,
        call: &Call,
        make: &dyn Fn(&Http, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_tries(call, make, 0)
    }

    fn send_tries(
        &self,
        call: &Call,
        make: &dyn Fn(&Http, &str) -> RequestBuilder,
        retries: u32,
    ) -> Result<Response, RegistryError> {
        let http = self.http(call.registry)?;
        let base = self.base_url(call.registry, call.api_host);
        let scope_key = call.scopes.join(" ");
        let mut attempt = 0;
        let mut authenticated_once = false;
        loop {
            let mut req = make(&http, &base);
            let cached = self
                .auth
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(call.registry.to_string(), scope_key.clone()))
                .cloned();
            if let Some(h) = cached {
                req = req.header(AUTHORIZATION, h);
            }
            let result = req.send();
            if let Err(e) = &result {
                if speaks_plain_http(e) {
                    return Err(RegistryError::PlainHttp {
                        registry: call.registry.to_string(),
                    });
                }
            }
            let transient_wait = match &result {
                // A certificate that is not trusted will not become trusted.
                Err(e) if transport_message(e).contains("certificate") => None,
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() => {
                    Some(None)
                }
                Ok(r) if r.status().is_server_error() => Some(None),
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => Some(
                    r.headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60))),
                ),
                _ => None,
            };
            if let Some(wait) = transient_wait {
                if attempt < retries {
                    let backoff = wait.unwrap_or_else(|| {
                        Duration::from_millis(500u64 << attempt.min(5)).min(Duration::from_secs(10))
                    });
                    tracing::warn!(
                        "{}: {}; retrying in {:.1}s ({}/{retries})",
                        call.what,
                        describe(&result),
                        backoff.as_secs_f64(),
                        attempt + 1
                    );
                    std::thread::sleep(backoff);
                    attempt += 1;
                    continue;
                }
                return match result {
                    Err(e) => Err(RegistryError::Transport {
                        what: call.what.clone(),
                        message: transport_message(&e),
                    }),
                    Ok(r) => Err(status_error(&call.what, r)),
                };
            }
            let response = result.map_err(|e| RegistryError::Transport {
                what: call.what.clone(),
                message: transport_message(&e),
            })?;
            if response.status() == StatusCode::UNAUTHORIZED {
                if authenticated_once {
                    return Err(RegistryError::Unauthorized {
                        registry: call.registry.to_string(),
                        message: "the registry refused the credentials (wrong username or password, or no access)".into(),
                    });
                }
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let header = self.authenticate(call, &http, challenge)?;
                self.auth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((call.registry.to_string(), scope_key.clone()), header);
                authenticated_once = true;
                continue;
            }
            return Ok(response);
        }
    }

    fn authenticate(
        &self,
        call: &Call,
        http: &Http,
        challenge: Option<Challenge>,
    ) -> Result<HeaderValue, RegistryError> {
        let credential = self.credential(call.registry)?;
        let unauthorized = |m: &str| RegistryError::Unauthorized {
            registry: call.registry.to_string(),
            message: m.to_string(),
        };
        match challenge {
            Some(Challenge::Basic) => match credential {
                Some(Credential::Basic { username, password }) => {
                    basic_header(&username, &password)
                }
                Some(Credential::IdentityToken(_)) => Err(unauthorized(
                    "the registry wants a password; only an identity token is configured",
                )),
                None => Err(unauthorized(
                    "the registry requires credentials and none are configured (docker login)",
                )),
            },
            Some(Challenge::Bearer { realm, service }) => {
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(s) = &service {
                    query.push(("service", s.clone()));
                }
                for s in &call.scopes {
                    query.push(("scope", s.clone()));
                }
                let response = match &credential {
                    Some(Credential::IdentityToken(token)) => {
                        let mut form = query.clone();
                        form.push(("grant_type", "refresh_token".into()));
                        form.push(("refresh_token", token.clone()));
                        form.push(("client_id", "kiln".into()));
                        http.post(&realm).form(&form).send()
                    }
                    Some(Credential::Basic { username, password }) => http
                        .get(&realm)
                        .query(&query)
                        .basic_auth(username, Some(password))
                        .send(),
                    None => http.get(&realm).query(&query).send(),
                }
                .map_err(|e| RegistryError::Transport {
                    what: format!("token service of {}", call.registry),
                    message: transport_message(&e),
                })?;
                let status = response.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(unauthorized(if credential.is_some() {
                        "the token service refused the credentials (wrong username or password)"
                    } else {
                        "the registry requires credentials and none are configured (docker login)"
                    }));
                }
                if !status.is_success() {
                    return Err(unauthorized(&format!(
                        "the token service answered {status}"
                    )));
                }
                let text = response
                    .text()
                    .map_err(|_| unauthorized("the token service's answer broke off"))?;
                let body: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|_| unauthorized("the token service sent no JSON"))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| unauthorized("the token service sent no token"))?;
                let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| unauthorized("the token is not a valid header"))?;
                v.set_sensitive(true);
                Ok(v)
            }
            None => Err(unauthorized(
                "401 without a usable WWW-Authenticate challenge",
            )),
        }
    }
}

fn basic_header(user: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| RegistryError::Config("credentials are not valid header text".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn describe(r: &Result<Response, reqwest::Error>) -> String {
    match r {
        Ok(resp) => format!("HTTP {}", resp.status()),
        Err(e) => transport_message(e),
    }
}

/// A transport error without URLs (they may carry tokens in queries).
/// A TLS handshake answered with plain HTTP (rustls sees a record that is
/// no TLS record): no retry will help, `--insecure-registry` will.
fn speaks_plain_http(e: &reqwest::Error) -> bool {
    let text = transport_message(e);
    text.contains("InvalidContentType") || text.contains("corrupt message")
}

pub fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = e.without_url_ref();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        if self.is_connect() {
            "cannot connect".into()
        } else if self.is_timeout() {
            "timed out".into()
        } else if self.is_body() || self.is_decode() {
            "connection broke while reading".into()
        } else {
            "request failed".into()
        }
    }
}

/// A non-success response as an error, with the registry's own message.
pub fn status_error(what: &str, r: Response) -> RegistryError {
    let status = r.status();
    let body = r.text().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|errs| {
                errs.iter()
                    .filter_map(|e| {
                        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                        let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                        (!code.is_empty() || !msg.is_empty())
                            .then(|| format!("{code} {msg}").trim().to_string())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .unwrap_or_default();
    if status == StatusCode::NOT_FOUND {
        return RegistryError::NotFound {
            what: what.to_string(),
            message,
        };
    }
    RegistryError::Status {
        what: what.to_string(),
        status: status.as_u16(),
        message,
    }
}

impl Reference {
    /// Scope of a token for this repository.
    pub fn scope(&self, access: Access) -> String {
        match access {
            Access::Pull => format!("repository:{}:pull", self.repository),
            Access::Push => format!("repository:{}:pull,push", self.repository),
        }
    }
}
