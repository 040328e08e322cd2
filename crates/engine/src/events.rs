//! What the engine tells its caller while it builds: one channel of
//! events, rendered by the CLI; and the per-step record for `--report`.

use kiln_cache::CacheOutcome;
use serde::Serialize;

#[derive(Debug, Clone)]
pub enum Event {
    /// A step begins (`index` of `total` steps in the build).
    StepStarted {
        stage: String,
        index: usize,
        total: usize,
        text: String,
        /// More than one stage in the build.
        several_stages: bool,
    },
    /// A line a RUN step printed (`stage` when the build has several,
    /// which may run at the same time).
    Output {
        stage: Option<String>,
        line: usize,
        text: String,
    },
    /// A base image is being fetched (pulled, or read from `--cache-dir`).
    Pulling { reference: String },
    /// It is there: its layers extracted into the layer store.
    Pulled {
        reference: String,
        layers: usize,
        seconds: f64,
    },
    /// What the cache did for the step at `line`.
    Cache { line: usize, outcome: CacheOutcome },
    /// A step finished.
    StepDone(StepRecord),
}

/// What happened to one step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub stage: String,
    pub line: usize,
    pub instruction: String,
    /// A RUN step (executes a command unless the cache hit).
    pub is_run: bool,
    pub cache: CacheOutcome,
    /// When the step began, in seconds since the build began.
    pub started: f64,
    pub seconds: f64,
    pub layer_digest: Option<String>,
    pub layer_size: Option<u64>,
}

/// The JSON shape `--report` writes for a step.
#[derive(Serialize)]
struct StepJson<'a> {
    stage: &'a str,
    line: usize,
    instruction: &'a str,
    cache: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    reasons: &'a [String],
    started: f64,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer_digest: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer_size: Option<u64>,
}

/// `--report`: every step, and totals.
pub fn report_json(records: &[StepRecord]) -> serde_json::Value {
    let steps: Vec<StepJson> = records
        .iter()
        .map(|r| StepJson {
            stage: &r.stage,
            line: r.line,
            instruction: &r.instruction,
            cache: r.cache.label(),
            reasons: match &r.cache {
                CacheOutcome::Miss(reasons) => reasons,
                _ => &[],
            },
            started: r.started,
            seconds: r.seconds,
            layer_digest: &r.layer_digest,
            layer_size: r.layer_size,
        })
        .collect();
    let count = |o: fn(&CacheOutcome) -> bool| records.iter().filter(|r| o(&r.cache)).count();
    serde_json::json!({
        "steps": steps,
        "totals": {
            "steps": records.len(),
            "hits": count(|c| *c == CacheOutcome::Hit),
            "misses": count(|c| matches!(c, CacheOutcome::Miss(_))),
            "shared": count(|c| *c == CacheOutcome::Shared),
            "runs_executed": records.iter().filter(|r| r.is_run && !r.cache.served()).count(),
            "seconds": records.iter().map(|r| r.seconds).sum::<f64>(),
        }
    })
}
