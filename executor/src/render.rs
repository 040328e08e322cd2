//! The engine's events as plain, timestamped log lines.

use kiln_engine::{CacheOutcome, Event, StepRecord};
use std::sync::mpsc::Receiver;

/// Log every event until the engine hangs up; returns the step records.
pub fn render(events: Receiver<Event>) -> Vec<StepRecord> {
    let mut records = Vec::new();
    for event in events {
        match event {
            Event::StepStarted {
                stage,
                index,
                total,
                text,
                several_stages: true,
            } => tracing::info!("[{index}/{total}] stage {stage}: {text}"),
            Event::StepStarted {
                index, total, text, ..
            } => tracing::info!("[{index}/{total}] {text}"),
            Event::Output { line, text } => tracing::info!("  line {line} | {text}"),
            Event::Cache {
                line,
                outcome: CacheOutcome::Hit,
            } => tracing::info!("  line {line} | cache hit"),
            Event::Cache {
                line,
                outcome: CacheOutcome::Miss(reasons),
            } if !reasons.is_empty() => {
                tracing::info!("  line {line} | cache miss: {}", reasons.join("; "))
            }
            Event::Cache { .. } => {}
            Event::StepDone(record) => records.push(record),
        }
    }
    records
}
