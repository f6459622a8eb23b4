//! [`App`]: the one object every front end holds. It owns the catalog, the running engines,
//! the hub settings, downloads, conversions and chat replies, and exposes each operation of
//! docs/APP_API.md as one async method with a typed error. Front ends (the CLI, the HTTP
//! server, the Tauri shell) adapt these methods and nothing else; data flows one way:
//! adapter -> App -> catalog, hub, engine.
use crate::chat::Replies;
use crate::convert::Conversions;
use crate::downloads::Downloads;
use crate::events::{AppEvent, Events, Subscription};
use crate::registry::{ModelRegistry, RegistryConfig};
use crate::settings::{self, Settings};
use crate::{Result, ServiceError};
use cortex_catalog::Catalog;
use cortex_hub::download::HubConfig;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Where the catalog (catalog.db) and the app's own files live: `$CORTEX_HOME`, else
    /// `~/.cortexstream`.
    pub home: PathBuf,
    /// The engines and the models folder (`registry.models_dir`).
    pub registry: RegistryConfig,
    /// The Hugging Face endpoint, token and cache (from the environment; settings override).
    pub hub: HubConfig,
    /// Import the embedded default model when the app opens (in the background).
    pub ensure_default_model: bool,
    /// Resume downloads and conversions left unfinished by the last run.
    pub resume_unfinished: bool,
}

impl AppConfig {
    pub fn from_env() -> Self {
        let registry = RegistryConfig::default();
        AppConfig {
            home: home_dir(),
            registry,
            hub: HubConfig::from_env(),
            ensure_default_model: true,
            resume_unfinished: true,
        }
    }
}

/// `$CORTEX_HOME`, else `~/.cortexstream` (the models folder's parent by default).
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CORTEX_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cortexstream")
}

#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: AppConfig,
    pub catalog: Catalog,
    pub registry: ModelRegistry,
    pub events: Events,
    /// The hub settings in force (the environment's, with the user's settings applied).
    pub hub: RwLock<HubConfig>,
    pub downloads: Downloads,
    pub conversions: Conversions,
    pub replies: Replies,
    /// The default model's catalog id, once imported and registered.
    pub default_model_id: Mutex<Option<String>>,
    /// When disk was last scanned for models.
    pub last_scan: Mutex<Option<std::time::Instant>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SystemInfo {
    pub version: &'static str,
    pub memory_bytes: Option<u64>,
    pub device: &'static str,
    pub default_model_id: Option<String>,
    pub models_dir: PathBuf,
    pub hf_endpoint: String,
    pub has_hf_token: bool,
}

impl App {
    /// Opens the catalog (applying migrations), applies stored settings, and starts the
    /// background work the config asks for. Must run inside a tokio runtime.
    pub async fn open(config: AppConfig) -> Result<App> {
        std::fs::create_dir_all(&config.home).map_err(ServiceError::io(&config.home))?;
        let catalog = Catalog::open(config.home.join("catalog.db")).await?;
        let stored = settings::load(&catalog).await?;
        let mut hub = config.hub.clone();
        settings::apply_to_hub(&stored, &mut hub);
        if let Some(token) = settings::read_token(&config.home) {
            hub.token = Some(token);
        }
        let mut registry_config = config.registry.clone();
        if let Some(mb) = stored.kv_memory_mb {
            registry_config.engine.kv_memory_bytes = Some((mb as usize) << 20);
        }
        if let Some(dir) = stored.models_dir.clone() {
            registry_config.models_dir = dir;
        }
        let app = App {
            inner: Arc::new(Inner {
                registry: ModelRegistry::new(registry_config),
                config,
                catalog,
                events: Events::default(),
                hub: RwLock::new(hub),
                downloads: Downloads::default(),
                conversions: Conversions::default(),
                replies: Replies::default(),
                default_model_id: Mutex::new(None),
                last_scan: Mutex::new(None),
            }),
        };
        app.inner.registry.spawn_idle_reaper();
        if app.inner.config.resume_unfinished {
            app.resume_unfinished().await?;
        }
        if app.inner.config.ensure_default_model {
            let this = app.clone();
            tokio::spawn(async move {
                if let Err(e) = this.ensure_default_model().await {
                    tracing::warn!("default model: {e}");
                }
            });
        }
        Ok(app)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn registry(&self) -> &ModelRegistry {
        &self.inner.registry
    }

    pub fn models_dir(&self) -> PathBuf {
        self.inner.registry.config().models_dir.clone()
    }

    pub fn hub_config(&self) -> HubConfig {
        self.inner
            .hub
            .read()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn subscribe(&self) -> Subscription {
        self.inner.events.subscribe()
    }

    pub(crate) fn emit(&self, e: AppEvent) {
        self.inner.events.send(e)
    }

    pub async fn system(&self) -> Result<SystemInfo> {
        let hub = self.hub_config();
        let default_model_id = self.default_model_id();
        Ok(SystemInfo {
            version: env!("CARGO_PKG_VERSION"),
            memory_bytes: cortex_engine::device::system_memory(),
            device: if cortex_mlx::default_device_is_gpu() {
                "gpu"
            } else {
                "cpu"
            },
            default_model_id,
            models_dir: self.models_dir(),
            hf_endpoint: hub.endpoint,
            has_hf_token: hub.token.is_some(),
        })
    }

    pub fn default_model_id(&self) -> Option<String> {
        crate::registry::lock(&self.inner.default_model_id).clone()
    }

    pub async fn settings(&self) -> Result<Settings> {
        settings::current(self).await
    }

    /// Stops replies, downloads (kept for resume), conversions and engines.
    pub async fn shutdown(&self) {
        self.inner.events.close();
        self.inner.replies.stop_all();
        self.inner.downloads.stop_all();
        self.inner.conversions.stop_all();
        self.inner.registry.shutdown().await;
    }
}
