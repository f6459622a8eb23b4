//! The running engines, one per model folder, keyed by the MODEL strings that named them.
//!
//! Invariants:
//! - a MODEL string is resolved (imported, downloaded) by one task at a time, and a folder is
//!   loaded by one task at a time: concurrent first requests wait for the same load;
//! - resolving and loading run in spawned tasks, so a request that goes away mid-load does
//!   not abandon a half-done import or download (the next request finds it done);
//! - a failed resolve or load is not remembered: the next request tries again;
//! - an engine is unloaded only while no [`ModelLease`] on it exists, and only after it has
//!   been idle for `idle_unload`; `active` is changed under the `engines` lock when a lease is
//!   taken, so the reaper and a new request cannot race;
//! - at most the `max` given to [`ModelLease::wait_ticket`] requests of one engine hold a
//!   [`WaitTicket`] at once (a compare-and-swap, so concurrent requests cannot overshoot);
//! - listings ([`ModelRegistry::library`], [`ModelRegistry::loaded`]) show names, never
//!   folders: a model requested by path is listed by no name of its own.
use crate::resolve::{is_plain_name, pull_logged, resolve_library_model, resolve_model};
use crate::ServiceError;
use cortex_engine::serving::{EngineConfig, EngineHandle, EngineStats};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, OnceCell};

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub engine: EngineConfig,
    /// Unload a model after this long without requests; None: never.
    pub idle_unload: Option<Duration>,
    /// Where named and imported models live (`cortex_engine::loader::models_dir()`).
    pub models_dir: PathBuf,
    /// The largest download a MODEL string may start, in bytes (None: no limit).
    pub max_download_bytes: Option<u64>,
    /// Engines loaded at once (None: no limit). Loading one more first unloads the least
    /// recently used engine no request is using; when every one is busy the load waits up to
    /// `busy_wait` for one to finish its requests, then is refused (busy) instead of running
    /// the machine out of memory.
    pub max_loaded: Option<usize>,
    /// How long a load waits for room under `max_loaded` (see there).
    pub busy_wait: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            engine: EngineConfig::default(),
            idle_unload: Some(Duration::from_secs(1800)),
            models_dir: cortex_engine::loader::models_dir(),
            max_download_bytes: None,
            max_loaded: Some(DEFAULT_MAX_LOADED),
            busy_wait: DEFAULT_BUSY_WAIT,
        }
    }
}

/// Which MODEL strings a caller may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelSources {
    /// Anything [`resolve_model`] takes: names, paths, .gguf files, Hugging Face ids
    /// (downloaded on first use).
    Any,
    /// Only models already here ([`resolve_library_model`]): for a server other machines or
    /// web pages can reach, which must not download or open files on a caller's behalf.
    Library,
}

/// Default [`RegistryConfig::max_loaded`], as Ollama's MAX_LOADED_MODELS per GPU.
pub const DEFAULT_MAX_LOADED: usize = 3;

/// Default [`RegistryConfig::busy_wait`]: a minute, the length of a long answer on a CPU.
pub const DEFAULT_BUSY_WAIT: Duration = Duration::from_secs(60);

/// A model of the library, as GET /v1/models lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelEntry {
    pub id: String,
    /// Unix seconds: the folder's modification time, or the load time.
    pub created: u64,
    pub loaded: bool,
}

/// A loaded engine and its state, for the stats endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct LoadedModelInfo {
    /// The MODEL strings that named it, first first, without filesystem paths
    /// ([`is_listed_name`]).
    pub names: Vec<String>,
    /// Never serialized: HTTP clients see names, not where the files are.
    #[serde(skip)]
    pub dir: PathBuf,
    pub model_type: String,
    pub max_context: usize,
    pub active_requests: usize,
    /// Requests holding a [`WaitTicket`]: submitted, no first token yet.
    pub queued: usize,
    pub idle_s: f64,
    /// Preloaded models are never unloaded for idleness.
    pub pinned: bool,
    pub stats: EngineStats,
}

#[derive(Clone)]
pub struct ModelRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    resolved: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
    engines: Mutex<HashMap<PathBuf, Arc<Slot>>>,
    /// Set on shutdown: stops downloads and refuses new leases.
    stopping: AtomicBool,
    /// Woken whenever a model's last request ends (room may have appeared under max_loaded).
    freed: Arc<Notify>,
}

struct Slot {
    dir: PathBuf,
    names: Mutex<Vec<String>>,
    engine: OnceCell<EngineHandle>,
    usage: Mutex<Usage>,
    /// Live [`WaitTicket`]s.
    waiting: AtomicUsize,
    /// Counted against [`RegistryConfig::max_loaded`] from the moment room was made for it
    /// until its load ends, so loads that run at once cannot overshoot the cap together.
    loading: AtomicBool,
    /// The registry's [`Inner::freed`].
    freed: Arc<Notify>,
}

struct Usage {
    active: usize,
    last_used: Instant,
    pinned: bool,
    loaded_at: SystemTime,
}

/// Locks, ignoring poisoning: every critical section here leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running engine held for one request: the model is not unloaded while a lease lives.
pub struct ModelLease {
    slot: Arc<Slot>,
    engine: EngineHandle,
}

impl ModelLease {
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// Counts one more request as waiting on this engine (submitted, not started yet) until
    /// the ticket is dropped; None when `max` requests already wait (`max` None: no limit).
    pub fn wait_ticket(&self, max: Option<usize>) -> Option<WaitTicket> {
        let max = max.unwrap_or(usize::MAX);
        self.slot
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(WaitTicket {
            slot: self.slot.clone(),
        })
    }
}

/// One request counted as waiting for its engine (see [`ModelLease::wait_ticket`]).
pub struct WaitTicket {
    slot: Arc<Slot>,
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        self.slot.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// True for names a listing may show: `default`, a bare name (the models folder), a Hugging
/// Face id or URL. False for filesystem paths (absolute, relative, `~`, `.gguf` files): a
/// listing is seen by every client, and a path tells them where files are.
pub fn is_listed_name(name: &str) -> bool {
    if name.contains(['/', '\\']) {
        return cortex_hub::is_hugging_face_model_id(name);
    }
    is_plain_name(name)
}

impl Drop for ModelLease {
    fn drop(&mut self) {
        self.slot.release();
    }
}

/// Counts a request against a slot until it is dropped (or turned into a lease).
struct Active(Option<Arc<Slot>>);

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.release();
        }
    }
}

impl Slot {
    fn release(&self) {
        let mut u = lock(&self.usage);
        u.active = u.active.saturating_sub(1);
        u.last_used = Instant::now();
        if u.active == 0 {
            self.freed.notify_waiters();
        }
    }

    fn idle_for(&self, idle: Duration, now: Instant) -> bool {
        let u = lock(&self.usage);
        u.active == 0 && !u.pinned && now.duration_since(u.last_used) >= idle
    }
}

impl ModelRegistry {
    pub fn new(config: RegistryConfig) -> Self {
        ModelRegistry {
            inner: Arc::new(Inner {
                config,
                resolved: Mutex::new(HashMap::new()),
                engines: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                freed: Arc::new(Notify::new()),
            }),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The running engine for `spec`, resolving (downloading, importing) and loading it on
    /// first use.
    pub async fn acquire(&self, spec: &str) -> Result<ModelLease, ServiceError> {
        self.acquire_from(spec, ModelSources::Any).await
    }

    /// [`Self::acquire`] for a caller limited to `sources`.
    pub async fn acquire_from(
        &self,
        spec: &str,
        sources: ModelSources,
    ) -> Result<ModelLease, ServiceError> {
        if self.inner.stopping.load(Ordering::Acquire) {
            return Err(ServiceError::ShuttingDown);
        }
        let dir = match sources {
            ModelSources::Any => self.resolve(spec).await?,
            ModelSources::Library => self.resolve_in_library(spec).await?,
        };
        let mut active = self.enter(spec, &dir);
        let slot = active.0.clone().ok_or(ServiceError::ShuttingDown)?;
        let engine = self.load(&slot).await?;
        active.0 = None; // from now on the lease releases the slot
        Ok(ModelLease { slot, engine })
    }

    /// Loads `spec` now and keeps it loaded for the server's lifetime.
    pub async fn preload(&self, spec: &str) -> Result<(), ServiceError> {
        let lease = self.acquire(spec).await?;
        lock(&lease.slot.usage).pinned = true;
        Ok(())
    }

    /// Resolves `spec` without downloading or opening paths ([`resolve_library_model`]);
    /// a name already resolved (by anyone) to a model folder is used as it is.
    async fn resolve_in_library(&self, spec: &str) -> Result<PathBuf, ServiceError> {
        if is_listed_name(spec) {
            let known = lock(&self.inner.resolved)
                .get(spec)
                .and_then(|c| c.get().cloned())
                .filter(|d| d.join("config.json").exists());
            if let Some(dir) = known {
                return Ok(dir);
            }
        }
        let (spec, models) = (spec.to_string(), self.inner.config.models_dir.clone());
        tokio::task::spawn_blocking(move || {
            let hub = cortex_hub::download::HubConfig::from_env();
            resolve_library_model(&spec, &models, &hub)
        })
        .await?
    }

    async fn resolve(&self, spec: &str) -> Result<PathBuf, ServiceError> {
        let cell = {
            let mut map = lock(&self.inner.resolved);
            let cell = map.entry(spec.to_string()).or_default();
            match cell.get() {
                Some(d) if d.join("config.json").exists() => return Ok(d.clone()),
                // a folder deleted since it was resolved is resolved again
                Some(_) => *cell = Arc::default(),
                None => {}
            }
            cell.clone()
        };
        let (inner, spec_owned, task_cell) = (self.inner.clone(), spec.to_string(), cell.clone());
        let task = tokio::spawn(async move {
            task_cell
                .get_or_try_init(|| async move {
                    tokio::task::spawn_blocking(move || {
                        let config = &inner.config;
                        let max = config.max_download_bytes;
                        let pull = |m: &cortex_hub::HubModel| pull_logged(m, max, &inner.stopping);
                        resolve_model(&spec_owned, &config.models_dir, &pull)
                    })
                    .await?
                })
                .await
                .cloned()
        });
        let result = task.await?;
        if result.is_err() {
            // forget failures (and keep the map from growing with unknown names)
            let mut map = lock(&self.inner.resolved);
            if map
                .get(spec)
                .is_some_and(|c| Arc::ptr_eq(c, &cell) && !c.initialized())
            {
                map.remove(spec);
            }
        }
        result
    }

    /// Registers one more request on `dir`'s slot (creating it).
    fn enter(&self, spec: &str, dir: &Path) -> Active {
        let mut engines = lock(&self.inner.engines);
        let slot = engines.entry(dir.to_path_buf()).or_insert_with(|| {
            Arc::new(Slot {
                dir: dir.to_path_buf(),
                names: Mutex::new(Vec::new()),
                engine: OnceCell::new(),
                waiting: AtomicUsize::new(0),
                loading: AtomicBool::new(false),
                freed: self.inner.freed.clone(),
                usage: Mutex::new(Usage {
                    active: 0,
                    last_used: Instant::now(),
                    pinned: false,
                    loaded_at: SystemTime::now(),
                }),
            })
        });
        {
            let mut names = lock(&slot.names);
            if !names.iter().any(|n| n == spec) {
                names.push(spec.to_string());
            }
        }
        lock(&slot.usage).active += 1;
        Active(Some(slot.clone()))
    }

    async fn load(&self, slot: &Arc<Slot>) -> Result<EngineHandle, ServiceError> {
        if let Some(e) = slot.engine.get() {
            return Ok(e.clone());
        }
        let (this, slot) = (self.clone(), slot.clone());
        // Spawned, so making room, the load and the end of its `loading` mark all complete even
        // when the request that started them goes away.
        let task = tokio::spawn(async move {
            if this.inner.config.max_loaded.is_some() {
                // Only a plausible model may unload another one to make room.
                let dir = slot.dir.clone();
                tokio::task::spawn_blocking(move || {
                    cortex_engine::loader::precheck(&dir).map_err(|error| ServiceError::Load {
                        dir: dir.clone(),
                        error,
                    })
                })
                .await??;
                this.make_room(&slot).await?;
            }
            let config = this.inner.config.engine.clone();
            let loaded = slot
                .engine
                .get_or_try_init(|| async {
                    let (dir, s) = (slot.dir.clone(), slot.clone());
                    let engine =
                        tokio::task::spawn_blocking(move || start_engine(&dir, config)).await??;
                    lock(&s.usage).loaded_at = SystemTime::now();
                    Ok::<_, ServiceError>(engine)
                })
                .await
                .cloned();
            slot.loading.store(false, Ordering::Release);
            loaded
        });
        task.await?
    }

    /// Before `incoming` loads: when [`RegistryConfig::max_loaded`] engines already run,
    /// unloads the least recently used one that no request uses (a pinned model never). When
    /// every one is in use, waits for one to be free, up to [`RegistryConfig::busy_wait`],
    /// then [`ServiceError::Busy`]; also Busy as soon as nobody wants `incoming` any more
    /// (its requests went away while it waited).
    async fn make_room(&self, incoming: &Arc<Slot>) -> Result<(), ServiceError> {
        let start = Instant::now();
        let deadline = start + self.inner.config.busy_wait;
        loop {
            // registered before looking, so a model freed in between still wakes us
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let busy = match self.try_make_room(incoming).await {
                Err(ServiceError::Busy(message)) => message,
                done => return done,
            };
            let now = Instant::now();
            let wanted = lock(&incoming.usage).active > 0;
            if now >= deadline || !wanted || self.inner.stopping.load(Ordering::Acquire) {
                // what it really waited: less than busy_wait when given up early
                let waited = now - start;
                return Err(ServiceError::Busy(
                    if self.inner.config.busy_wait.is_zero() {
                        busy
                    } else {
                        format!("{busy} (waited {:.1} s for one)", waited.as_secs_f32())
                    },
                ));
            }
            // woken when a model's last request ends; an unload elsewhere (idle, by hand)
            // frees room without waking us, so look again at least every second
            let nap = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(nap, freed).await;
        }
    }

    /// One look at the loaded engines for [`Self::make_room`].
    async fn try_make_room(&self, incoming: &Arc<Slot>) -> Result<(), ServiceError> {
        let Some(max) = self.inner.config.max_loaded else {
            return Ok(());
        };
        let victim = {
            let mut engines = lock(&self.inner.engines);
            let loaded: Vec<&Arc<Slot>> = engines
                .values()
                .filter(|s| {
                    !Arc::ptr_eq(s, incoming)
                        && (s.engine.initialized() || s.loading.load(Ordering::Acquire))
                })
                .collect();
            if loaded.len() < max.max(1) {
                incoming.loading.store(true, Ordering::Release);
                return Ok(());
            }
            let lru = loaded
                .iter()
                .filter(|s| s.engine.initialized())
                .filter_map(|s| {
                    let u = lock(&s.usage);
                    (u.active == 0 && !u.pinned).then_some((u.last_used, s.dir.clone()))
                })
                .min();
            let Some((_, dir)) = lru else {
                return Err(ServiceError::Busy(format!(
                    "{} models are loaded, the most this server keeps, and each is answering \
                     a request; try again when one is free",
                    loaded.len()
                )));
            };
            incoming.loading.store(true, Ordering::Release);
            engines.remove(&dir)
        };
        if let Some(slot) = victim {
            tracing::info!(dir = %slot.dir.display(), "unloading the least recently used model");
            // joining the engine thread blocks
            let _ = tokio::task::spawn_blocking(move || drop(slot)).await;
        }
        Ok(())
    }

    /// True when the model folder `dir` has a running engine.
    pub fn is_loaded(&self, dir: &Path) -> bool {
        lock(&self.inner.engines)
            .get(dir)
            .is_some_and(|s| s.engine.initialized())
    }

    /// Stops the engine of `dir` now. Refused while requests use it; false when none ran.
    pub async fn unload(&self, dir: &Path) -> Result<bool, ServiceError> {
        let slot = {
            let mut engines = lock(&self.inner.engines);
            match engines.get(dir) {
                None => return Ok(false),
                Some(s) if lock(&s.usage).active > 0 => {
                    return Err(ServiceError::Conflict(
                        "the model is answering a request; stop it first".into(),
                    ))
                }
                Some(_) => engines.remove(dir),
            }
        };
        let loaded = slot.as_ref().is_some_and(|s| s.engine.initialized());
        // joining the engine thread blocks
        let _ = tokio::task::spawn_blocking(move || drop(slot)).await;
        Ok(loaded)
    }

    /// Removes and returns the engines idle for longer than `idle_unload`.
    fn take_idle(&self) -> Vec<Arc<Slot>> {
        let Some(idle) = self.inner.config.idle_unload else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut engines = lock(&self.inner.engines);
        let gone: Vec<PathBuf> = engines
            .iter()
            .filter(|(_, s)| s.idle_for(idle, now))
            .map(|(d, _)| d.clone())
            .collect();
        gone.iter().filter_map(|d| engines.remove(d)).collect()
    }

    /// Unloads idle engines; returns how many were unloaded.
    pub async fn unload_idle(&self) -> usize {
        let gone = self.take_idle();
        let n = gone.iter().filter(|s| s.engine.initialized()).count();
        for s in &gone {
            if s.engine.initialized() {
                tracing::info!(dir = %s.dir.display(), "unloading idle model");
            }
        }
        // joining engine threads blocks
        let _ = tokio::task::spawn_blocking(move || drop(gone)).await;
        n
    }

    /// Runs [`Self::unload_idle`] periodically until the registry shuts down.
    pub fn spawn_idle_reaper(&self) -> Option<tokio::task::JoinHandle<()>> {
        let idle = self.inner.config.idle_unload?;
        let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !this.inner.stopping.load(Ordering::Acquire) {
                tick.tick().await;
                this.unload_idle().await;
            }
        }))
    }

    /// Refuses new requests, cancels downloads and stops every engine: running requests end
    /// with finish reason `cancelled`.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        let slots: Vec<Arc<Slot>> = lock(&self.inner.engines).drain().map(|(_, s)| s).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for s in &slots {
                if let Some(e) = s.engine.get() {
                    e.shutdown();
                }
            }
        })
        .await;
    }

    /// The loaded engines with their live stats.
    pub fn loaded(&self) -> Vec<LoadedModelInfo> {
        let now = Instant::now();
        let engines = lock(&self.inner.engines);
        let mut out: Vec<LoadedModelInfo> = engines
            .values()
            .filter_map(|s| {
                let e = s.engine.get()?;
                let u = lock(&s.usage);
                let names = lock(&s.names);
                Some(LoadedModelInfo {
                    names: names
                        .iter()
                        .filter(|n| is_listed_name(n))
                        .cloned()
                        .collect(),
                    dir: s.dir.clone(),
                    model_type: e.model_type().to_string(),
                    max_context: e.max_context(),
                    active_requests: u.active,
                    queued: s.waiting.load(Ordering::Acquire),
                    idle_s: now.duration_since(u.last_used).as_secs_f64(),
                    pinned: u.pinned,
                    stats: e.stats(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.names.cmp(&b.names));
        out
    }

    /// The local library: folders of the models folder that hold a config.json, plus every
    /// name (not path: [`is_listed_name`]) a loaded model was requested by. Sorted by id.
    pub fn library(&self) -> Vec<ModelEntry> {
        let mut out: Vec<ModelEntry> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.inner.config.models_dir) {
            for e in entries.flatten() {
                let path = e.path();
                if !path.join("config.json").is_file() {
                    continue;
                }
                let created = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map(unix_secs)
                    .unwrap_or(0);
                out.push(ModelEntry {
                    id: e.file_name().to_string_lossy().into_owned(),
                    created,
                    loaded: false,
                });
            }
        }
        let engines = lock(&self.inner.engines);
        for s in engines.values().filter(|s| s.engine.initialized()) {
            let created = unix_secs(lock(&s.usage).loaded_at);
            let folder = s.dir.file_name().map(|n| n.to_string_lossy().into_owned());
            for e in out.iter_mut() {
                if Some(&e.id) == folder.as_ref()
                    && s.dir.parent() == Some(&self.inner.config.models_dir)
                {
                    e.loaded = true;
                }
            }
            for name in lock(&s.names).iter().filter(|n| is_listed_name(n)) {
                if !out.iter().any(|e| &e.id == name) {
                    out.push(ModelEntry {
                        id: name.clone(),
                        created,
                        loaded: true,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// Loads `dir` on a new engine thread (blocking).
fn start_engine(dir: &Path, config: EngineConfig) -> Result<EngineHandle, ServiceError> {
    let started = Instant::now();
    let engine = EngineHandle::load(dir, config).map_err(|error| ServiceError::Load {
        dir: dir.to_path_buf(),
        error,
    })?;
    tracing::info!(
        dir = %dir.display(),
        load_ms = started.elapsed().as_millis() as u64,
        max_context = engine.max_context(),
        "model loaded"
    );
    Ok(engine)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::is_listed_name;

    #[test]
    fn listings_show_names_not_paths() {
        for name in [
            "default",
            "tiny",
            "org/model",
            "org/model@main",
            "Qwen2.5-0.5B",
        ] {
            assert!(is_listed_name(name), "{name}");
        }
        for path in [
            "/etc",
            "/home/me/models/tiny",
            "./tiny",
            "../x",
            "~/models/x",
            "C:\\models\\x",
            "model.gguf",
            "/tmp/model.GGUF",
            ".hidden",
            "",
        ] {
            assert!(!is_listed_name(path), "{path}");
        }
    }
}
