//! The real time, for what is not part of an image: cache entries' ages.

/// Real time for entry ages (not clamped by SOURCE_DATE_EPOCH).
pub(crate) fn now_unclamped() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
