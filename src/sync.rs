//! Mutex access that survives a panic elsewhere: the data behind these locks (counters, maps
//! of in-flight work, a test clock) stays consistent at every await-free step, so a poisoned
//! lock is taken over rather than turned into a second panic.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
