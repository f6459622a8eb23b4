//! The OpenAI-compatible HTTP API over the service layer (docs/SERVER.md):
//!
//! | route | |
//! |---|---|
//! | GET /health | `{"status":"ok"}`, never needs the API key |
//! | GET /v1/models, GET /v1/models/{id} | the local library and the loaded models |
//! | POST /v1/chat/completions | chat, whole or streamed (SSE) |
//! | POST /v1/completions | plain prompt completion, whole or streamed |
//! | GET /v1/engine/stats | each loaded model's engine state (not OpenAI's) |
//! | /api/... | the app API for the web UI (docs/APP_API.md), same origin only |
//! | GET / | the built web UI |
//!
//! Handlers are thin: [`params`] checks the request, [`prompt`] tokenizes it, the engine runs
//! it, [`generate`] and [`stream`] shape the answer. [`guard`] holds the security middleware.
mod app_api;
mod error;
mod extract;
mod generate;
mod guard;
mod openai;
mod params;
mod prompt;
mod redact;
mod routes;
mod stream;
mod ui;

pub use error::ApiError;
pub use guard::{OriginPolicy, DEFAULT_ORIGINS};

use crate::service::{ModelRegistry, ModelSources, RegistryConfig, ServiceError};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use cortex_service::{App, AppConfig};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 picks a free port ([`Server::local_addr`] tells which).
    pub port: u16,
    /// Required as `Authorization: Bearer <key>` on every route but /health.
    pub api_key: Option<String>,
    /// Browser origins allowed to call the API; empty: [`DEFAULT_ORIGINS`].
    pub allowed_origins: Vec<String>,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Requests per model that may wait at once (submitted, no first token yet); more are
    /// refused with 503 `queue_full` and a Retry-After header. None: no limit.
    pub max_queue: Option<usize>,
    /// How long a request may wait for its first token before it is dropped with 503
    /// `queue_timeout` (a stream: an error event). Streams that produce tokens are never cut.
    /// None: no limit.
    pub queue_timeout: Option<Duration>,
    pub registry: RegistryConfig,
    /// The app's home (catalog.db, settings): `cortex_service::app::home_dir()` by default.
    pub home: PathBuf,
    /// Import the default model in the background at start and resume unfinished downloads.
    pub background_work: bool,
    /// The built web UI served at `/`; None: found by [`ui::find_ui_dir`].
    pub ui_dir: Option<PathBuf>,
    /// The Hugging Face endpoint, token and cache; None: from the environment.
    pub hub: Option<cortex_hub::download::HubConfig>,
    /// Serve only models already here: MODEL strings may not start downloads or name files by
    /// path, and the app API's downloads, imports, conversions and settings changes are
    /// refused (403 `forbidden`). None: on exactly when others can reach the server
    /// ([`ServerConfig::exposed`]).
    pub library_only: Option<bool>,
}

impl ServerConfig {
    /// Reachable by other machines (a non-loopback address) or by any web page (`*` origin).
    pub fn exposed(&self) -> bool {
        !self.host.is_loopback() || self.allowed_origins.iter().any(|o| o.trim() == "*")
    }

    /// [`ServerConfig::library_only`] with its default applied.
    pub fn serves_library_only(&self) -> bool {
        self.library_only.unwrap_or_else(|| self.exposed())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            api_key: None,
            allowed_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            max_queue: Some(DEFAULT_MAX_QUEUE),
            queue_timeout: Some(DEFAULT_QUEUE_TIMEOUT),
            registry: RegistryConfig::default(),
            home: cortex_service::app::home_dir(),
            background_work: true,
            ui_dir: None,
            hub: None,
            library_only: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Exposed ([`ServerConfig::exposed`]) without an API key: anyone who can reach it could
    /// use it.
    #[error(
        "refusing to serve {what} without an API key: anyone who can reach it could use it \
         (set CORTEX_API_KEY or --api-key-file)"
    )]
    NeedsApiKey { what: String },
}

/// Default [`ServerConfig::max_queue`]: well above what one machine runs at once (the engine
/// runs up to 64 sequences), so only a flood is refused.
pub const DEFAULT_MAX_QUEUE: usize = 256;
/// Default [`ServerConfig::queue_timeout`].
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct AppState {
    pub registry: ModelRegistry,
    pub app: App,
    pub limits: Limits,
    /// What MODEL strings may name ([`ServerConfig::library_only`]).
    pub sources: ModelSources,
}

/// How much waiting a generation request may cause ([`ServerConfig`] has the meanings).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_queue: Option<usize>,
    pub queue_timeout: Option<Duration>,
}

/// A bound server: the port is taken, nothing is served until [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
    app: App,
    /// The server opened `app` itself and stops it with the server; a server given an app
    /// ([`Server::with_app`]) leaves it running for its owner.
    owns_app: bool,
}

impl Server {
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let listener = listen(&config).await?;
        let app = App::open(AppConfig {
            home: config.home.clone(),
            registry: config.registry.clone(),
            hub: config
                .hub
                .clone()
                .unwrap_or_else(cortex_hub::download::HubConfig::from_env),
            ensure_default_model: config.background_work,
            resume_unfinished: config.background_work,
        })
        .await?;
        Self::serving(listener, &config, app, true)
    }

    /// A server over an app its caller already runs (the desktop app's local API server):
    /// `config.registry`, `home`, `hub` and `background_work` are the app's business and
    /// ignored here; stopping the server leaves the app running.
    pub async fn with_app(config: ServerConfig, app: App) -> Result<Server, ServerError> {
        let listener = listen(&config).await?;
        Self::serving(listener, &config, app, false)
    }

    fn serving(
        listener: tokio::net::TcpListener,
        config: &ServerConfig,
        app: App,
        owns_app: bool,
    ) -> Result<Server, ServerError> {
        let addr = listener.local_addr()?;
        let router = router(config, app.clone());
        Ok(Server {
            listener,
            addr,
            router,
            app,
            owns_app,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn registry(&self) -> &ModelRegistry {
        self.app.registry()
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Serves until `shutdown` completes; then refuses new requests, ends running ones
    /// (streams get an error event) and stops every engine.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let app = self.owns_app.then(|| self.app.clone());
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down");
            if let Some(app) = app {
                app.shutdown().await;
            }
        };
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stop)
            .await;
        if self.owns_app {
            self.app.shutdown().await;
        }
        Ok(served?)
    }
}

async fn listen(config: &ServerConfig) -> Result<tokio::net::TcpListener, ServerError> {
    let addr = SocketAddr::new(config.host, config.port);
    let has_key = config
        .api_key
        .as_ref()
        .is_some_and(|k| !k.trim().is_empty());
    if config.exposed() && !has_key {
        let what = if config.host.is_loopback() {
            "every web page (allowed origin `*`)".to_string()
        } else {
            format!("{addr}, an address other machines can reach")
        };
        return Err(ServerError::NeedsApiKey { what });
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Binds, preloads `preload` (kept loaded), and serves until Ctrl-C or SIGTERM.
pub async fn serve(config: ServerConfig, preload: Option<&str>) -> Result<(), ServerError> {
    let server = Server::bind(config).await?;
    if let Some(model) = preload {
        server.registry().preload(model).await?;
    }
    tracing::info!("listening on http://{}", server.local_addr());
    server.run(shutdown_signal()).await
}

/// Completes on Ctrl-C (or SIGTERM on Unix).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The whole application: routes inside, security and logging outside.
pub fn router(config: &ServerConfig, app: App) -> Router {
    let registry = app.registry().clone();
    let ui_dir = config.ui_dir.clone().or_else(ui::find_ui_dir);
    let origins = OriginPolicy::new(&config.allowed_origins);
    let library_only = config.serves_library_only();
    if library_only {
        tracing::info!("serving the local library only: no downloads, imports or model paths");
    }
    let security = Arc::new(guard::Security {
        loopback_hosts_only: config.host.is_loopback(),
        origins: origins.clone(),
        api_key: config.api_key.clone().filter(|k| !k.is_empty()),
    });
    let routes = Router::new()
        .route("/health", get(routes::health))
        .route("/v1/models", get(routes::models))
        .route("/v1/models/{*id}", get(routes::model))
        .route("/v1/engine/stats", get(routes::engine_stats))
        .route("/v1/chat/completions", post(generate::chat))
        .route("/v1/completions", post(generate::completions))
        .route("/v1", get(routes::not_found))
        // "/v1/" itself: the wildcard below needs a segment, and the UI's static files would
        // answer in plain text (fuzz find)
        .route("/v1/", get(routes::not_found).post(routes::not_found))
        .route(
            "/v1/{*rest}",
            get(routes::not_found).post(routes::not_found),
        )
        .merge(app_api::routes(library_only))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(AppState {
            registry,
            app,
            limits: Limits {
                max_queue: config.max_queue,
                queue_timeout: config.queue_timeout,
            },
            sources: if library_only {
                ModelSources::Library
            } else {
                ModelSources::Any
            },
        })
        .merge(ui::routes(ui_dir.as_deref()));
    let routes = if library_only {
        routes.layer(middleware::from_fn(redact::json_without_paths))
    } else {
        routes
    };
    routes
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn(ui::security_headers))
        .layer(middleware::from_fn_with_state(
            security.clone(),
            guard::api_key,
        ))
        .layer(guard::cors(origins))
        .layer(middleware::from_fn_with_state(
            security,
            guard::host_and_origin,
        ))
        // outside the origin allow list: /api refuses every other origin in its own shape
        .layer(middleware::from_fn(app_api::same_origin_only))
        .layer(middleware::from_fn(guard::request_log))
}

/// `prefix` + 24 hex digits, unpredictable enough for ids (not for secrets).
pub(crate) fn random_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    let a = h.finish();
    h.write_u64(a);
    format!("{prefix}{a:016x}{:08x}", h.finish() as u32)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
