//! kiln's build engine: walks the plan, runs each step against an
//! in-memory view of the image's file system (through an `Executor` for
//! RUN and a `LayerCache` for cached steps), commits layers, and exports
//! the image.

mod cached;
pub mod chmod;
mod clock;
pub mod context;
pub mod copy;
mod engine;
mod error;
mod events;
pub mod evict;
mod export;
mod fold;
pub mod fstree;
pub mod ignore;
mod image_source;
mod isolation;
mod layer_access;
mod layer_index;
pub mod layerstore;
mod locks;
pub mod materialize;
mod metadata;
mod options;
mod remote;
mod root;
mod sbom;
mod shared;
pub mod source;
mod stage;
mod step;
mod text;
pub mod users;
pub mod verify;
mod warm;
mod written;

pub use engine::{build, load_ignore, Finished, Services};
pub use error::{BuildError, StepError, StepFailure};
pub use events::{report_json, Event, StepRecord};
pub use export::{export, Built, DigestFiles, ExportError, Output};
pub use image_source::image_config;
pub use isolation::choose_isolation;
pub use kiln_cache::CacheOutcome;
pub use kiln_sandbox::{enter_for_build, entrypoint, Isolation, IsolationMode, RootKind};
pub use options::{BaseBlobs, BuildOptions, CacheLocation, CacheSettings, SecretSource};
pub use sbom::Scanned;
pub use shared::SharedSteps;
pub use stage::DEFAULT_PATH;
pub use warm::warm;
