//! `kiln warm`: base images stored in a local OCI layout for builds that
//! must not reach a registry (`kiln build --cache-dir`).

use kiln_dockerfile::Platform;
use kiln_registry::{Client, Reference, RegistryError, RegistryOptions, WantedPlatform};
use std::path::Path;

/// Pull each image for `platform` into the layout at `dir`; returns each
/// reference with its manifest digest.
pub fn warm(
    dir: &Path,
    images: &[Reference],
    platform: &Platform,
    registry: RegistryOptions,
) -> Result<Vec<(Reference, String)>, RegistryError> {
    let client = Client::new(registry);
    std::fs::create_dir_all(dir)
        .map_err(|e| RegistryError::io(format!("creating {}", dir.display()), e))?;
    let wanted = WantedPlatform {
        os: platform.os.clone(),
        architecture: platform.arch.clone(),
        variant: platform.variant.clone(),
    };
    let mut stored = Vec::new();
    for r in images {
        let digest = kiln_registry::local::warm(&client, dir, r, &wanted)?;
        tracing::info!("stored {r}@{digest} in {}", dir.display());
        stored.push((r.clone(), digest));
    }
    Ok(stored)
}
