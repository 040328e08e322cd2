//! An executor for tests that need no root, namespaces or mounts: it
//! records each process and answers with what a script says the step did.

use crate::executor::{Executor, OutputSink, Process, StageRoot, StepOutcome, StepRequest};
use crate::SandboxError;
use std::sync::Mutex;

type Script = dyn Fn(&StepRequest) -> StepOutcome + Send + Sync;

pub struct FakeExecutor {
    script: Box<Script>,
    ran: Mutex<Vec<Process>>,
}

impl FakeExecutor {
    /// `script` plays each step: it may write files under the step's
    /// directory and return them as changes.
    pub fn new(script: impl Fn(&StepRequest) -> StepOutcome + Send + Sync + 'static) -> Self {
        FakeExecutor {
            script: Box::new(script),
            ran: Mutex::new(Vec::new()),
        }
    }

    /// The processes run so far.
    pub fn ran(&self) -> Vec<Process> {
        self.ran.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Executor for FakeExecutor {
    fn describe(&self) -> &'static str {
        "fake"
    }
    fn run(
        &self,
        step: &StepRequest,
        _root: &mut dyn StageRoot,
        output: OutputSink<'_>,
    ) -> Result<StepOutcome, SandboxError> {
        if let Ok(mut ran) = self.ran.lock() {
            ran.push(step.process.clone());
        }
        output(&format!("fake: {}", step.process.argv.join(" ")));
        Ok((self.script)(step))
    }
}
