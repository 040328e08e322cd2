//! The `LayerCache` seam: where cache entries are looked up and stored.
//! Backends: a registry repository, a local OCI layout, and memory (tests).

use crate::KeyParts;
use kiln_image::LayerBlob;
use std::collections::HashMap;
use std::sync::Mutex;

/// A cached step.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub parts: KeyParts,
    /// The history text of the step that made it.
    pub created_by: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// The step's layer, its blob on local disk (none: the step changed nothing).
    pub layer: Option<LayerBlob>,
}

/// What a step stores after a miss.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    pub key: &'a str,
    /// The step's place in the Dockerfile: its latest entry explains misses.
    pub slot: &'a str,
    pub parts: &'a KeyParts,
    pub created_by: &'a str,
    pub layer: Option<&'a LayerBlob>,
    /// Seconds since the epoch (real time, for expiry).
    pub created: i64,
    pub os: &'a str,
    pub architecture: &'a str,
}

/// What the cache did for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The cached layer was used; nothing ran.
    Hit,
    /// Another platform's build of this process ran the same step (same
    /// key) and its layer was used; nothing ran here.
    Shared,
    /// Looked up, not found; the reasons when `--explain-cache` asked.
    Miss(Vec<String>),
    /// A step the cache does not keep (metadata, or not asked for).
    NotCached,
    /// No cache, or it failed earlier in the build.
    Off,
}

impl CacheOutcome {
    /// Whether a cache served the step's layer (nothing ran).
    pub fn served(&self) -> bool {
        matches!(self, CacheOutcome::Hit | CacheOutcome::Shared)
    }

    /// The word reports use.
    pub fn label(&self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Shared => "shared",
            CacheOutcome::Miss(_) => "miss",
            CacheOutcome::NotCached => "not cached",
            CacheOutcome::Off => "off",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Registry(#[from] kiln_registry::RegistryError),
    #[error(transparent)]
    Image(#[from] kiln_image::ImageError),
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

/// Where cache entries live.
pub trait LayerCache: Send + Sync {
    /// For messages: the repository or directory.
    fn describe(&self) -> String;
    /// The entry for `key` unless older than the TTL at `now`.
    fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, CacheError>;
    /// The latest entry stored for a step slot (any age), to explain a miss.
    fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, CacheError>;
    /// Store an entry under its key and as its slot's latest.
    fn store(&self, entry: &NewEntry<'_>) -> Result<(), CacheError>;
}

/// Entries in memory, for tests of the engine.
#[derive(Default)]
pub struct MemoryCache {
    pub ttl: i64,
    entries: Mutex<HashMap<String, CacheEntry>>,
    slots: Mutex<HashMap<String, CacheEntry>>,
}

impl MemoryCache {
    pub fn new(ttl: i64) -> MemoryCache {
        MemoryCache {
            ttl,
            ..Default::default()
        }
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LayerCache for MemoryCache {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, CacheError> {
        let entries = self.entries.lock().map_err(|_| poisoned())?;
        Ok(entries
            .get(key)
            .filter(|e| now - e.created <= self.ttl)
            .cloned())
    }

    fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self
            .slots
            .lock()
            .map_err(|_| poisoned())?
            .get(slot)
            .cloned())
    }

    fn store(&self, new: &NewEntry<'_>) -> Result<(), CacheError> {
        let entry = CacheEntry {
            parts: new.parts.clone(),
            created_by: new.created_by.to_string(),
            created: new.created,
            layer: new.layer.cloned(),
        };
        self.slots
            .lock()
            .map_err(|_| poisoned())?
            .insert(new.slot.to_string(), entry.clone());
        self.entries
            .lock()
            .map_err(|_| poisoned())?
            .insert(new.key.to_string(), entry);
        Ok(())
    }
}

fn poisoned() -> CacheError {
    CacheError::Invalid {
        what: "memory cache".into(),
        message: "a thread panicked while holding it".into(),
    }
}

/// A shared cache (several builds in one process, as tests do).
impl<T: LayerCache + ?Sized> LayerCache for std::sync::Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, CacheError> {
        (**self).lookup(key, now)
    }
    fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, CacheError> {
        (**self).lookup_slot(slot)
    }
    fn store(&self, entry: &NewEntry<'_>) -> Result<(), CacheError> {
        (**self).store(entry)
    }
}
