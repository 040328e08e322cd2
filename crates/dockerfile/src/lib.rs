//! kiln's Dockerfile front end: a BuildKit-compatible parser, shell word
//! expansion, typed instructions and the build plan. This crate does no I/O.

pub mod checks;
pub mod dump;
pub mod error;
mod flags;
pub mod instructions;
pub mod invalid;
mod line_parsers;
pub mod parser;
pub mod plan;
mod run_args;
pub mod shell;

pub use error::ParseError;
pub use instructions::{Command, CopyArgs, Instruction};
pub use parser::{parse, Ast, Heredoc, Node};
pub use plan::{BuildArgs, CopySource, Plan, PlanOptions, Platform, Stage, StageBase, Step};
