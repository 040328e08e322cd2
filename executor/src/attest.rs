//! `--sbom`, `--provenance`, `--attest`: which attestations to make, and
//! making them once the platforms' images are built: in-toto statements
//! (SPDX from the engine's scans, SLSA provenance from the build's own
//! record), one attestation manifest per image, and the statement files
//! `--sbom-output`/`--provenance-output` ask for.

use crate::cli::BuildArgs;
use crate::Error;
use kiln_attest::provenance::{BuildFacts, ConfigSource, StepFact};
use kiln_attest::statement::{subjects, SPDX_PREDICATE};
use kiln_attest::{
    parse_bool, Attached, Mode, ProvenanceRequest, Request, SbomRequest, Statement, Version,
};
use kiln_engine::{Finished, StepRecord};
use kiln_image::BuiltImage;
use std::path::{Path, PathBuf};

/// `mode=max,version=v0.2,builder-id=X`, `min`, `true`, `false`: `None`
/// turns provenance off.
fn provenance_value(flag: &str, value: &str) -> Result<Option<ProvenanceRequest>, Error> {
    if let Some(on) = parse_bool(value) {
        return Ok(on.then(ProvenanceRequest::default));
    }
    let mut p = ProvenanceRequest::default();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or(("mode", part));
        match (k, v) {
            ("type", "provenance") => {}
            ("mode", "min") => p.mode = Mode::Min,
            ("mode", "max") => p.mode = Mode::Max,
            ("version", "v1") | ("version", "v1.0") => p.version = Version::V1,
            ("version", "v0.2") => p.version = Version::V02,
            ("builder-id", id) => p.builder_id = Some(id.to_string()),
            ("disabled", d) if parse_bool(d) == Some(true) => return Ok(None),
            ("disabled", _) => {}
            _ => {
                return Err(format!(
                    "{flag} {value}: {part} is not one of mode=min|max, version=v1|v0.2, builder-id=URI, disabled=true"
                )
                .into())
            }
        }
    }
    Ok(Some(p))
}

fn sbom_value(flag: &str, value: &str) -> Result<bool, Error> {
    if let Some(on) = parse_bool(value) {
        return Ok(on);
    }
    let mut on = true;
    for part in value.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("type", "sbom")) => {}
            Some(("disabled", d)) => on = parse_bool(d) != Some(true),
            // BuildKit's scanner image: kiln scans itself, and says so.
            Some(("generator", g)) => {
                tracing::warn!("{flag}: generator={g} is not run: kiln scans the image itself")
            }
            _ => {
                return Err(
                    format!("{flag} {value}: {part} is not type=sbom or disabled=BOOL").into(),
                )
            }
        }
    }
    Ok(on)
}

/// What to attest. Provenance (mode=min) is on by default when pushing,
/// as buildx does, unless BUILDX_NO_DEFAULT_ATTESTATIONS is set.
pub fn request(args: &BuildArgs, pushing: bool) -> Result<Request, Error> {
    let defaults_off = std::env::var_os("BUILDX_NO_DEFAULT_ATTESTATIONS")
        .is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    let mut provenance = (pushing && !defaults_off).then(ProvenanceRequest::default);
    let mut sbom = false;
    for a in &args.attest {
        match a.split(',').find_map(|p| p.strip_prefix("type=")) {
            Some("sbom") => sbom = sbom_value("--attest", a)?,
            Some("provenance") => provenance = provenance_value("--attest", a)?,
            _ => return Err(format!("--attest {a}: give type=sbom or type=provenance").into()),
        }
    }
    if let Some(v) = &args.sbom {
        sbom = sbom_value("--sbom", v)?;
    }
    if let Some(v) = &args.provenance {
        provenance = provenance_value("--provenance", v)?;
    }
    let arg = |name: &str| {
        args.build_args
            .iter()
            .filter_map(|a| a.split_once('='))
            .rev()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| parse_bool(v))
            .unwrap_or(false)
    };
    Ok(Request {
        sbom: sbom.then(|| SbomRequest {
            scan_stages: arg("BUILDKIT_SBOM_SCAN_STAGE"),
            scan_context: arg("BUILDKIT_SBOM_SCAN_CONTEXT"),
        }),
        provenance,
    })
}

/// What the whole run knows that goes into every platform's provenance.
pub struct RunFacts<'a> {
    pub args: &'a BuildArgs,
    pub request: &'a Request,
    pub dockerfile: &'a Path,
    /// Its text, as the build parsed it.
    pub dockerfile_text: &'a str,
    pub context: &'a Path,
    pub git_context: Option<(String, String)>,
    pub started: std::time::SystemTime,
    /// `--reproducible`/SOURCE_DATE_EPOCH: the times written.
    pub clamp: Option<i64>,
    /// The names the image is pushed or written as.
    pub names: Vec<String>,
    pub work: &'a Path,
}

fn rfc3339(t: std::time::SystemTime, clamp: Option<i64>) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    kiln_image::config::rfc3339(clamp.map_or(secs, |c| secs.min(c)))
}

/// The CI run's URL, as buildx takes the builder id from GitHub Actions.
fn ci_builder_id() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(server), Some(repo), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        return format!("{server}/{repo}/actions/runs/{run}");
    }
    var("CI_JOB_URL").unwrap_or_default()
}

/// The steps; whether each hit the cache unless the build is
/// reproducible (the same inputs must give the same bytes, whatever a
/// cache held).
fn steps(records: &[StepRecord], reproducible: bool) -> Vec<StepFact> {
    records
        .iter()
        .map(|r| StepFact {
            line: r.line,
            instruction: r.instruction.clone(),
            cached: (!reproducible).then_some(r.cache.served()),
        })
        .collect()
}

/// The statements for one platform's image, in the order they are
/// attached: the SBOMs (the image's first), then the provenance.
fn statements(run: &RunFacts, image: &BuiltImage, finished: &Finished) -> Vec<Attached> {
    let platform = kiln_image::oci::platform_text(&kiln_image::oci::platform(
        &image.config.os,
        &image.config.architecture,
        image.config.variant.as_deref(),
    ));
    let subject = subjects(&run.names, &platform, &image.manifest_digest);
    let finished_at = rfc3339(std::time::SystemTime::now(), run.clamp);
    let mut out = Vec::new();
    for scanned in &finished.scanned {
        let name = match scanned.name.as_str() {
            "" => run.names.first().cloned().unwrap_or_else(|| "image".into()),
            other => other.to_string(),
        };
        let doc = kiln_attest::spdx::document(
            &scanned.inventory,
            &kiln_attest::spdx::DocumentInfo {
                name: &name,
                created: &finished_at,
                tool: concat!("kiln-", env!("CARGO_PKG_VERSION")),
            },
        );
        out.push(Attached {
            predicate_type: SPDX_PREDICATE,
            bytes: Statement::new(SPDX_PREDICATE, subject.clone(), doc).to_bytes(),
        });
    }
    if let Some(p) = &run.request.provenance {
        let path = run
            .dockerfile
            .strip_prefix(run.context)
            .unwrap_or(run.dockerfile)
            .display()
            .to_string();
        let build_args = run
            .args
            .build_args
            .iter()
            .filter_map(|a| a.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let invocation_id = match run.clamp {
            // The same inputs, the same bytes: an id of what was built.
            Some(_) => kiln_attest::sha256_hex(image.manifest_digest.as_bytes())[..25].to_string(),
            None => kiln_attest::sha256_hex(
                format!(
                    "{:?}{}{}",
                    run.started,
                    std::process::id(),
                    image.manifest_digest
                )
                .as_bytes(),
            )[..25]
                .to_string(),
        };
        let facts = BuildFacts {
            builder_id: p.builder_id.clone().unwrap_or_else(ci_builder_id),
            invocation_id,
            started: rfc3339(run.started, run.clamp),
            finished: finished_at.clone(),
            builder_platform: kiln_dockerfile::Platform::host().to_string(),
            config_source: ConfigSource {
                path,
                git: run.git_context.clone(),
            },
            build_args,
            secrets: run
                .args
                .secrets
                .iter()
                .filter_map(|s| secret_id(s))
                .collect(),
            ssh: run
                .args
                .ssh
                .iter()
                .map(|s| s.split('=').next().unwrap_or(s).to_string())
                .collect(),
            materials: finished.materials.clone(),
            dockerfile: run.dockerfile_text.as_bytes().to_vec(),
            steps: steps(&finished.records, run.clamp.is_some()),
            network: true,
            kiln_version: env!("CARGO_PKG_VERSION").into(),
        };
        let (predicate_type, predicate) =
            kiln_attest::provenance::predicate(&facts, p.mode, p.version);
        out.push(Attached {
            predicate_type,
            bytes: Statement::new(predicate_type, subject, predicate).to_bytes(),
        });
    }
    out
}

/// `id=ID,src=...` or `id=ID,env=...`: the id only.
fn secret_id(item: &str) -> Option<String> {
    item.split(',')
        .find_map(|p| p.strip_prefix("id="))
        .map(String::from)
}

/// Each image's attestation manifest (in the images' order), and the
/// statement files asked for.
pub fn attach(run: &RunFacts, built: &[Finished]) -> Result<Vec<BuiltImage>, Error> {
    let mut manifests = Vec::new();
    let several = built.len() > 1;
    for (i, finished) in built.iter().enumerate() {
        let image = &finished.image;
        let attached = statements(run, image, finished);
        let platform = format!("{}-{}", image.config.os, image.config.architecture);
        let sub = several.then_some(platform.as_str());
        let is_sbom = |a: &&Attached| a.predicate_type == SPDX_PREDICATE;
        if let Some(dir) = &run.args.sbom_output {
            write_statements(dir, sub, attached.iter().filter(is_sbom))?;
        }
        if let Some(dir) = &run.args.provenance_output {
            write_statements(dir, sub, attached.iter().filter(|a| !is_sbom(a)))?;
        }
        let dir = run.work.join(format!("attestations-{i}"));
        manifests.push(kiln_attest::attestation_manifest(image, &attached, &dir)?);
    }
    Ok(manifests)
}

fn write_statements<'a>(
    dir: &Path,
    platform: Option<&str>,
    statements: impl Iterator<Item = &'a Attached>,
) -> Result<(), Error> {
    let dir: PathBuf = match platform {
        Some(p) => dir.join(p),
        None => dir.to_path_buf(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (n, s) in statements.enumerate() {
        let name = match (s.predicate_type, n) {
            (SPDX_PREDICATE, 0) => "sbom.spdx.json".to_string(),
            (SPDX_PREDICATE, n) => format!("sbom-{n}.spdx.json"),
            _ => "provenance.json".to_string(),
        };
        let path = dir.join(name);
        std::fs::write(&path, &s.bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        tracing::info!("wrote {}", path.display());
    }
    Ok(())
}
