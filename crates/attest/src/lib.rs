//! Supply-chain attestations made by kiln itself, offline: an SBOM (SPDX
//! 2.3) from scanners that read the image's package databases and
//! manifests, SLSA provenance from what the build resolved, each as an
//! in-toto statement, attached to the image as BuildKit attaches them.

pub mod files;
pub mod license;
pub mod manifest;
pub mod package;
pub mod provenance;
pub mod scan;
pub mod spdx;
pub mod statement;

pub use files::{DirFiles, ImageFiles, Kind};
pub use manifest::{attestation_manifest, Attached};
pub use package::{Ecosystem, Package};
pub use provenance::{BuildFacts, Material, Mode, Version};
pub use scan::{scan, Inventory};
pub use statement::{Statement, Subject};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("writing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serialising an attestation")]
    Json(#[source] serde_json::Error),
}

impl AttestError {
    fn io(path: &Path, source: std::io::Error) -> AttestError {
        AttestError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What attestations a build makes (`--sbom`, `--provenance`, `--attest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub sbom: Option<SbomRequest>,
    pub provenance: Option<ProvenanceRequest>,
}

impl Request {
    pub fn any(&self) -> bool {
        self.sbom.is_some() || self.provenance.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbomRequest {
    /// `BUILDKIT_SBOM_SCAN_STAGE`: also scan the stages the target used.
    pub scan_stages: bool,
    /// `BUILDKIT_SBOM_SCAN_CONTEXT`: also scan the build context.
    pub scan_context: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvenanceRequest {
    pub mode: Mode,
    pub version: Version,
    /// `builder-id=`; else the CI run's URL where one is known.
    pub builder_id: Option<String>,
}

/// A boolean as BuildKit's attestation options and build args take it
/// (`true`, `1`, `t`, `yes`, `on` and their opposites), or `None`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    kiln_image::sha256_hex(bytes)
}
