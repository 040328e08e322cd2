//! SLSA provenance as BuildKit 0.32 writes it: v1 by default, v0.2 when
//! asked; `mode=min` names the sources, `mode=max` adds the build args,
//! the secret and SSH ids (never their values) and the Dockerfile itself.
//! The field layout follows BuildKit's slsa-definitions.md (checked
//! against what BuildKit v0.32.2 pushes; see docs/attestations.md).

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// BuildKit's build type for each format (the parameters follow it).
const BUILD_TYPE_V1: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";
const BUILD_TYPE_V02: &str = "https://mobyproject.org/buildkit@v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    #[default]
    V1,
    V02,
}

/// Something the build read from outside: a base image, a URL, a git
/// commit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Material {
    pub uri: String,
    /// (algorithm, hex): `sha256` for images and URLs, `sha1` for git.
    pub digest: (String, String),
}

/// Where the Dockerfile and context came from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The Dockerfile's path in the context.
    pub path: String,
    /// A git context: its URL and commit.
    pub git: Option<(String, String)>,
}

/// A step as the build ran it.
#[derive(Debug, Clone)]
pub struct StepFact {
    pub line: usize,
    pub instruction: String,
    /// Whether the cache served it; `None` in reproducible builds, whose
    /// attestations must not depend on what a cache held.
    pub cached: Option<bool>,
}

/// What the provenance says about one platform's build.
#[derive(Debug, Clone, Default)]
pub struct BuildFacts {
    pub builder_id: String,
    pub invocation_id: String,
    pub started: String,
    pub finished: String,
    /// The platform kiln ran on (`linux/amd64`).
    pub builder_platform: String,
    pub config_source: ConfigSource,
    /// `--build-arg`s as given.
    pub build_args: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub ssh: Vec<String>,
    pub materials: Vec<Material>,
    /// The Dockerfile's bytes (written in `mode=max`).
    pub dockerfile: Vec<u8>,
    pub steps: Vec<StepFact>,
    /// Steps could reach the network (no `--network=none` on every RUN).
    pub network: bool,
    pub kiln_version: String,
}

fn digest_set(d: &(String, String)) -> Value {
    json!({ d.0.clone(): d.1.clone() })
}

fn request(f: &BuildFacts, mode: Mode) -> Value {
    let mut args = BTreeMap::new();
    args.insert("cmdline".to_string(), "dockerfile.v0".to_string());
    if mode == Mode::Max {
        for (k, v) in &f.build_args {
            args.insert(format!("build-arg:{k}"), v.clone());
        }
    }
    let mut r = json!({
        "frontend": "dockerfile.v0",
        "args": args,
        "locals": match f.config_source.git {
            Some(_) => json!([]),
            None => json!([{"name": "context"}, {"name": "dockerfile"}]),
        },
    });
    if mode == Mode::Max {
        let ids = |v: &[String]| {
            v.iter()
                .map(|id| json!({"id": id, "optional": false}))
                .collect::<Vec<_>>()
        };
        if !f.secrets.is_empty() {
            r["secrets"] = ids(&f.secrets).into();
        }
        if !f.ssh.is_empty() {
            r["ssh"] = ids(&f.ssh).into();
        }
    }
    r
}

/// The Dockerfile's path; for a git context the repository and commit,
/// else the Dockerfile's own sha256.
fn config_source(f: &BuildFacts, path_key: &str) -> Value {
    let mut c = json!({ path_key: f.config_source.path });
    match &f.config_source.git {
        Some((url, commit)) => {
            c["uri"] = url.clone().into();
            c["digest"] = json!({"sha1": commit});
        }
        None => c["digest"] = json!({"sha256": crate::sha256_hex(&f.dockerfile)}),
    }
    c
}

fn steps(f: &BuildFacts) -> Value {
    f.steps
        .iter()
        .map(|s| {
            let mut step = json!({"line": s.line, "instruction": s.instruction});
            if let Some(cached) = s.cached {
                step["cached"] = cached.into();
            }
            step
        })
        .collect::<Vec<_>>()
        .into()
}

fn source_info(f: &BuildFacts) -> Value {
    json!({
        "infos": [{
            "filename": f.config_source.path,
            "language": "Dockerfile",
            "data": base64::engine::general_purpose::STANDARD.encode(&f.dockerfile),
        }]
    })
}

/// The predicate (its type and body).
pub fn predicate(f: &BuildFacts, mode: Mode, version: Version) -> (&'static str, Value) {
    let mut materials = f.materials.clone();
    materials.sort();
    materials.dedup();
    let deps: Vec<Value> = materials
        .iter()
        .map(|m| json!({"uri": m.uri, "digest": digest_set(&m.digest)}))
        .collect();
    // Every source is a material unless it is the local context (not
    // content-addressed): then the list is not complete.
    let complete_materials = f.config_source.git.is_some();
    let mut kiln_meta = json!({ "steps": steps(f) });
    if mode == Mode::Max {
        kiln_meta["source"] = source_info(f);
    }
    match version {
        Version::V1 => (
            crate::statement::SLSA_V1_PREDICATE,
            json!({
                "buildDefinition": {
                    "buildType": BUILD_TYPE_V1,
                    "externalParameters": {
                        "configSource": config_source(f, "path"),
                        "request": request(f, mode),
                    },
                    "internalParameters": {
                        "builderPlatform": f.builder_platform,
                        "kilnVersion": f.kiln_version,
                    },
                    "resolvedDependencies": deps,
                },
                "runDetails": {
                    "builder": { "id": f.builder_id },
                    "metadata": {
                        "invocationId": f.invocation_id,
                        "startedOn": f.started,
                        "finishedOn": f.finished,
                        "buildkit_completeness": {
                            "request": mode == Mode::Max,
                            "resolvedDependencies": complete_materials,
                        },
                        "buildkit_hermetic": complete_materials && !f.network,
                        "buildkit_metadata": kiln_meta,
                    },
                },
            }),
        ),
        Version::V02 => (
            crate::statement::SLSA_V02_PREDICATE,
            json!({
                "builder": { "id": f.builder_id },
                "buildType": BUILD_TYPE_V02,
                "materials": deps,
                "invocation": {
                    "configSource": config_source(f, "entryPoint"),
                    "parameters": request(f, mode),
                    "environment": { "platform": f.builder_platform },
                },
                "metadata": {
                    "buildInvocationID": f.invocation_id,
                    "buildStartedOn": f.started,
                    "buildFinishedOn": f.finished,
                    "completeness": {
                        "parameters": mode == Mode::Max,
                        "environment": true,
                        "materials": complete_materials,
                    },
                    "reproducible": false,
                    "https://mobyproject.org/buildkit@v1#metadata": kiln_meta,
                },
            }),
        ),
    }
}
