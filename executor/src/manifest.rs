//! `kiln manifest push`: one index of images built on several runners
//! (each for its own platform), as `docker manifest create` + `push` and
//! `buildx imagetools create` make one.

use crate::cli::{ManifestCommand, ManifestPushArgs};
use crate::Error;
use kiln_registry::{BlobStore, Client, Reference};

pub fn run(command: ManifestCommand) -> Result<(), Error> {
    match command {
        ManifestCommand::Push(args) => push(args),
    }
}

fn push(args: ManifestPushArgs) -> Result<(), Error> {
    let parse = |what: &str, r: &str| {
        Reference::parse(r).map_err(|e| crate::exit::usage(format!("{what} {r}: {e}").into()))
    };
    let target = parse("--target", &args.target)?;
    let images = args
        .images
        .iter()
        .map(|i| parse("image", i))
        .collect::<Result<Vec<_>, _>>()?;
    let client = Client::new(crate::options::registry_access(&args.registry)?);
    // Configs (and blobs copied between registries) pass through here.
    let scratch = tempfile::tempdir()?;
    let store = BlobStore::new(scratch.path());
    let index = kiln_registry::index::push_index(&client, &store, &target, &images)?;
    tracing::info!(
        "pushed {target}@{} (an index of {})",
        index.digest,
        index.platforms().join(", ")
    );
    if let Some(path) = &args.digest_file {
        std::fs::write(path, &index.digest)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
