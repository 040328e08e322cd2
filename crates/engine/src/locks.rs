//! Locks that outlive a panic: a stage thread that panicked holding one
//! fails its own build; the others still read what it guarded.

use std::sync::{Mutex, MutexGuard};

/// A lock, whether or not a thread panicked holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
