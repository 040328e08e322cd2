//! kiln's build engine: walks the plan, runs each instruction against an
//! in-memory view of the image's file system, and commits layers.

pub mod copy;
pub mod engine;
pub mod fstree;
pub mod ignore;
pub mod layerstore;
pub mod materialize;
mod metadata;
mod run;
pub mod source;
pub mod users;

pub use engine::{
    build, build_with_records, BuildError, BuildOptions, CacheLocation, CacheSettings, StepEvent,
    StepRecord, DEFAULT_PATH,
};
pub use run::IsolationMode;
