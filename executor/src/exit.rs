//! kiln's exit codes (docs/usage.md): distinct for what a CI job reacts
//! to differently.

use kiln_engine::{BuildError, ExportError, StepFailure};

/// The command line is wrong: a flag, a value, a missing output or context.
pub const USAGE: u8 = 2;
/// A step failed (a RUN's command, a missing COPY source, ...), or
/// anything else went wrong (disk full, ...).
pub const FAILED: u8 = 1;
/// The Dockerfile cannot be parsed or planned.
pub const DOCKERFILE: u8 = 3;
/// A registry refused, failed or could not be reached; or credentials.
pub const REGISTRY: u8 = 4;

/// A usage error: the message as it is, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

pub fn usage(e: crate::Error) -> crate::Error {
    Box::new(Usage(e.to_string()))
}

/// The exit code an error means.
pub fn code(e: &(dyn std::error::Error + 'static)) -> u8 {
    if e.is::<Usage>() || e.is::<kiln_engine::context::ContextError>() {
        return USAGE;
    }
    if e.is::<kiln_dockerfile::ParseError>() {
        return DOCKERFILE;
    }
    if e.is::<kiln_registry::RegistryError>() {
        return REGISTRY;
    }
    match e.downcast_ref::<BuildError>() {
        Some(BuildError::Platform { source, .. }) => code(source.as_ref()),
        Some(BuildError::Step(step)) => match &step.cause {
            StepFailure::Registry(_) | StepFailure::Reference(_) => REGISTRY,
            _ => FAILED,
        },
        Some(BuildError::Export(ExportError::Push { .. } | ExportError::IndexRefused { .. })) => {
            REGISTRY
        }
        _ => match e.downcast_ref::<ExportError>() {
            Some(ExportError::Push { .. } | ExportError::IndexRefused { .. }) => REGISTRY,
            _ => FAILED,
        },
    }
}
