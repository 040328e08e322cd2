//! The isolation a build uses, chosen once before any stage starts: how
//! its steps run (an [`Executor`]) and what their root is to the engine.
//! The roots are a closed set, so an enum; executors vary at run time, so
//! a trait with nothing mode-specific in it.

use crate::executor::Executor;
use crate::in_place::FixedRoot;
use std::sync::Arc;

/// What a step's root is, for the engine.
#[derive(Debug, Clone)]
pub enum RootKind {
    /// The stage's layers stacked read-only under the step's own upper
    /// directory (overlay): stages built on one another share them.
    Stacked,
    /// A directory the step changes where it is (chroot, a private copy):
    /// a stage built on another needs its own.
    Directory,
    /// This container's own `/` (in-place mode): one stage at a time, and
    /// what it keeps stays out of the stage.
    Fixed(FixedRoot),
}

/// The executor and its root kind; shared by the platforms of one build.
#[derive(Clone)]
pub struct Isolation {
    executor: Arc<dyn Executor>,
    root: RootKind,
}

impl Isolation {
    pub fn new(executor: Arc<dyn Executor>, root: RootKind) -> Isolation {
        Isolation { executor, root }
    }

    pub fn executor(&self) -> &dyn Executor {
        self.executor.as_ref()
    }

    pub fn root(&self) -> &RootKind {
        &self.root
    }

    /// In-place mode's root.
    pub fn fixed_root(&self) -> Option<&FixedRoot> {
        match &self.root {
            RootKind::Fixed(f) => Some(f),
            _ => None,
        }
    }

    /// Whether steps change the directory they are given (so a stage
    /// built on another needs its own copy).
    pub fn changes_root_in_place(&self) -> bool {
        !matches!(self.root, RootKind::Stacked)
    }
}
