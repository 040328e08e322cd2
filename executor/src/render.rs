//! The engine's events on the terminal: live bars on a TTY (indicatif),
//! plain timestamped lines elsewhere (CI logs); the step records for the
//! report and the summary.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_engine::{CacheOutcome, Event, StepRecord};
use std::sync::mpsc::Receiver;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
}

/// `--progress auto`: bars on a terminal unless `$CI` says this is a CI job.
pub fn mode(progress: crate::cli::ProgressArg) -> Mode {
    use crate::cli::ProgressArg;
    use std::io::IsTerminal;
    match progress {
        ProgressArg::Tty => Mode::Tty,
        ProgressArg::Plain => Mode::Plain,
        ProgressArg::Auto => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            // The same rule as the log's: a CI job gets plain lines.
            if std::io::stderr().is_terminal() && !ci {
                Mode::Tty
            } else {
                Mode::Plain
            }
        }
    }
}

/// Render every event until the engine hangs up; returns the step records.
/// `prefix` (a platform, when a build has several) begins every plain
/// line; several platforms render as plain lines.
pub fn render(events: Receiver<Event>, mode: Mode, prefix: Option<String>) -> Vec<StepRecord> {
    match (mode, prefix) {
        (Mode::Tty, None) => bars(events),
        (_, prefix) => plain(
            events,
            &prefix.map(|p| format!("[{p}] ")).unwrap_or_default(),
        ),
    }
}

fn cache_note(outcome: &CacheOutcome) -> &'static str {
    match outcome {
        CacheOutcome::Hit => ", cache hit",
        CacheOutcome::Shared => ", shared with another platform's build",
        CacheOutcome::Miss(_) => ", cache miss",
        _ => "",
    }
}

fn plain(events: Receiver<Event>, p: &str) -> Vec<StepRecord> {
    let mut records = Vec::new();
    for event in events {
        match event {
            Event::StepStarted {
                stage,
                index,
                total,
                text,
                several_stages: true,
            } => tracing::info!("{p}[{index}/{total}] stage {stage}: {text}"),
            Event::StepStarted {
                index, total, text, ..
            } => tracing::info!("{p}[{index}/{total}] {text}"),
            Event::Output { stage, line, text } => match stage {
                Some(stage) => tracing::info!("{p}  {stage} line {line} | {text}"),
                None => tracing::info!("{p}  line {line} | {text}"),
            },
            Event::Pulling { reference } => tracing::info!("{p}pulling {reference}"),
            Event::Pulled {
                reference,
                layers,
                seconds,
            } => tracing::info!("{p}pulled {reference} ({layers} layers) in {seconds:.1}s"),
            Event::Cache {
                line,
                outcome: CacheOutcome::Hit,
            } => tracing::info!("{p}  line {line} | cache hit"),
            Event::Cache {
                line,
                outcome: CacheOutcome::Miss(reasons),
            } if !reasons.is_empty() => {
                tracing::info!("{p}  line {line} | cache miss: {}", reasons.join("; "))
            }
            Event::Cache { .. } => {}
            Event::StepDone(record) => {
                tracing::info!(
                    "{p}  line {} | done in {:.1}s{}",
                    record.line,
                    record.seconds,
                    cache_note(&record.cache)
                );
                records.push(record);
            }
        }
    }
    records
}

fn spinner(bars: &MultiProgress, message: String) -> ProgressBar {
    let bar = bars.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn bars(events: Receiver<Event>) -> Vec<StepRecord> {
    let bars = MultiProgress::new();
    let mut records = Vec::new();
    let mut step: Option<(ProgressBar, String)> = None;
    let mut pulls: Vec<(String, ProgressBar)> = Vec::new();
    for event in events {
        match event {
            Event::StepStarted {
                stage,
                index,
                total,
                text,
                several_stages,
            } => {
                let title = if several_stages {
                    format!("[{index}/{total}] {stage}: {text}")
                } else {
                    format!("[{index}/{total}] {text}")
                };
                step = Some((spinner(&bars, title.clone()), title));
            }
            Event::Output { stage, line, text } => {
                let stage = stage.map(|s| format!("{s} ")).unwrap_or_default();
                let _ = bars.println(format!("  {stage}line {line} | {text}"));
            }
            Event::Pulling { reference } => {
                let bar = spinner(&bars, format!("pulling {reference}"));
                pulls.push((reference, bar));
            }
            Event::Pulled {
                reference,
                layers,
                seconds,
            } => {
                if let Some(i) = pulls.iter().position(|(r, _)| *r == reference) {
                    let (_, bar) = pulls.remove(i);
                    bar.finish_with_message(format!(
                        "pulled {reference} ({layers} layers) in {seconds:.1}s"
                    ));
                }
            }
            Event::Cache { line, outcome } => {
                if let CacheOutcome::Miss(reasons) = &outcome {
                    if !reasons.is_empty() {
                        let _ = bars.println(format!(
                            "  line {line} | cache miss: {}",
                            reasons.join("; ")
                        ));
                    }
                }
            }
            Event::StepDone(record) => {
                if let Some((bar, title)) = step.take() {
                    bar.set_style(
                        ProgressStyle::with_template("✓ {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.finish_with_message(format!(
                        "{title} ({:.1}s{})",
                        record.seconds,
                        cache_note(&record.cache)
                    ));
                }
                records.push(record);
            }
        }
    }
    if let Some((bar, title)) = step.take() {
        bar.abandon_with_message(format!("✗ {title}"));
    }
    records
}

/// The last line: what was built, how big, how many steps hit the cache.
pub fn summary(built: &kiln_engine::Built, names: &[String], records: &[StepRecord], seconds: f64) {
    let hits = records
        .iter()
        .filter(|r| r.cache == CacheOutcome::Hit)
        .count();
    let name = names.first().map(|n| format!("{n} ")).unwrap_or_default();
    let what = match built {
        kiln_engine::Built::Image(image) => {
            let size: u64 = image.layers.iter().map(|l| l.size).sum();
            format!(
                "{} layers, {:.1} MiB",
                image.layers.len(),
                size as f64 / (1024.0 * 1024.0)
            )
        }
        kiln_engine::Built::Index { index, .. } => {
            format!("an index of {}", index.platforms().join(", "))
        }
    };
    tracing::info!(
        "built {name}{} ({what}, {} steps, {hits} cache hits) in {seconds:.1}s",
        built.digest(),
        records.len(),
    );
}

/// A spinner while the image is pushed, when it is.
pub fn pushing(outputs: &[kiln_engine::Output]) -> Option<ProgressBar> {
    let names: Vec<String> = outputs
        .iter()
        .filter_map(|o| match o {
            kiln_engine::Output::Registry(d) => Some(d.iter().map(|r| r.to_string())),
            _ => None,
        })
        .flatten()
        .collect();
    if names.is_empty() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("pushing {}", names.join(", ")));
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}
