//! Logs through tracing to stderr: plain timestamped lines when stderr is
//! not a terminal or `$CI` is set (CI logs), compact coloured lines on a
//! terminal, or one JSON object a line (`--log-format json`).

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::filter::LevelFilter;

/// A `-v` level that is not one.
#[derive(Debug, thiserror::Error)]
#[error("-v {0:?}: expected panic, fatal, error, warn, info, debug or trace")]
pub struct UnknownLevel(String);

pub fn init(
    verbosity: &str,
    format: LogFormat,
    timestamp: Option<bool>,
) -> Result<(), UnknownLevel> {
    let level = match verbosity.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        other => return Err(UnknownLevel(other.to_string())),
    };
    // A CI job's log is plain text even where the runner gives it a pty.
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    let terminal = std::io::stderr().is_terminal() && !ci;
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(std::io::stderr);
    let timestamp = timestamp.unwrap_or(!terminal);
    match (format, timestamp) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).init(),
        (LogFormat::Color, true) => builder.with_ansi(true).init(),
        (LogFormat::Color, false) => builder.with_ansi(true).without_time().init(),
        (LogFormat::Text, true) => builder.with_ansi(terminal).init(),
        (LogFormat::Text, false) => builder.with_ansi(terminal).without_time().init(),
    }
    Ok(())
}
