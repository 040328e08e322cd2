//! The engine's errors. A step's failure keeps its typed cause as the
//! source and shows where it happened (file:line:column and the line).

use kiln_dockerfile::{Ast, Node, ParseError};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Sandbox(#[from] kiln_sandbox::SandboxError),
    #[error(transparent)]
    Layer(#[from] kiln_layer::LayerError),
    #[error(transparent)]
    Registry(#[from] kiln_registry::RegistryError),
    #[error(transparent)]
    Reference(#[from] kiln_registry::ReferenceError),
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Tree(#[from] crate::fstree::TreeError),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error(transparent)]
    Expand(#[from] kiln_dockerfile::shell::ExpandError),
    #[error(transparent)]
    LayerStore(#[from] crate::layerstore::LayerStoreError),
    #[error(transparent)]
    Root(#[from] crate::materialize::MaterializeError),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error(transparent)]
    Git(#[from] crate::context::ContextError),
    #[error(transparent)]
    Chmod(#[from] crate::chmod::ChmodError),
    #[error(transparent)]
    Port(#[from] crate::metadata::PortError),
    #[error(transparent)]
    Emulation(#[from] kiln_sandbox::emulation::EmulationError),
    #[error(transparent)]
    Invalid(#[from] kiln_dockerfile::invalid::Invalid),
}

impl From<String> for StepFailure {
    fn from(s: String) -> Self {
        StepFailure::Message(s)
    }
}

impl From<&str> for StepFailure {
    fn from(s: &str) -> Self {
        StepFailure::Message(s.to_string())
    }
}

/// A step that failed: `at` shows file, line, column, the cause's
/// message and the line itself.
#[derive(Debug, thiserror::Error)]
#[error("{at}")]
pub struct StepError {
    pub at: ParseError,
    #[source]
    pub cause: StepFailure,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Step(Box<StepError>),
    #[error("{path}: {source}")]
    Ignore {
        path: String,
        #[source]
        source: crate::ignore::IgnoreError,
    },
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the target stage was not built")]
    NoTarget,
    #[error(transparent)]
    Image(#[from] kiln_image::ImageError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    /// One platform's build of several failed.
    #[error("building for {platform}")]
    Platform {
        platform: String,
        #[source]
        source: Box<BuildError>,
    },
    #[error("a build thread panicked")]
    Panicked,
    #[error("choosing how steps run")]
    Isolation(#[source] kiln_sandbox::SandboxError),
}

impl BuildError {
    pub(crate) fn at(ast: &Ast, node: &Node, cause: impl Into<StepFailure>) -> BuildError {
        let cause = cause.into();
        BuildError::Step(Box::new(StepError {
            at: ast.error_in(node, cause.to_string()),
            cause,
        }))
    }
}
