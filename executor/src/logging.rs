//! Logs through tracing to stderr: plain timestamped lines when stderr is
//! not a terminal (CI logs), compact coloured lines when it is.

use std::io::IsTerminal;
use tracing_subscriber::filter::LevelFilter;

pub fn init(verbosity: &str) -> Result<(), String> {
    let level = match verbosity.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        other => {
            return Err(format!(
                "-v {other:?}: expected panic, fatal, error, warn, info, debug or trace"
            ))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.without_time().init();
    } else {
        builder.with_ansi(false).init();
    }
    Ok(())
}
