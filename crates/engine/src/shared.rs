//! Steps shared by the builds of one process (its platforms).

use kiln_cache::CacheEntry;

/// Steps shared by builds in one process (the platforms of one
/// `--platform a,b` build): a step whose key another build is running
/// waits for it and takes its result, so a `FROM --platform=$BUILDPLATFORM`
/// stage that does not depend on the target runs once.
#[derive(Default)]
pub struct SharedSteps {
    slots: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Slot>>>,
}

/// A key's result once a build has it.
type Slot = std::sync::Mutex<Option<CacheEntry>>;

impl SharedSteps {
    pub(crate) fn slot(&self, key: &str) -> std::sync::Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key.to_string()).or_default().clone()
    }
}
