//! The OpenAI-compatible HTTP API over the service layer (docs/SERVER.md):
//!
//! | route | |
//! |---|---|
//! | GET /health | `{"status":"ok"}`, never needs the API key |
//! | GET /v1/models, GET /v1/models/{id} | the local library and the loaded models |
//! | POST /v1/chat/completions | chat, whole or streamed (SSE) |
//! | POST /v1/completions | plain prompt completion, whole or streamed |
//! | GET /v1/engine/stats | each loaded model's engine state (not OpenAI's) |
//!
//! Handlers are thin: [`params`] checks the request, [`prompt`] tokenizes it, the engine runs
//! it, [`generate`] and [`stream`] shape the answer. [`guard`] holds the security middleware.
mod error;
mod extract;
mod generate;
mod guard;
mod openai;
mod params;
mod prompt;
mod routes;
mod stream;

pub use error::ApiError;
pub use guard::{OriginPolicy, DEFAULT_ORIGINS};

use crate::service::{ModelRegistry, RegistryConfig, ServiceError};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    pub registry: RegistryConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            api_key: None,
            allowed_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            registry: RegistryConfig::default(),
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
}

#[derive(Clone)]
pub struct AppState {
    pub registry: ModelRegistry,
}

/// A bound server: the port is taken, nothing is served until [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
    registry: ModelRegistry,
}

impl Server {
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        let registry = ModelRegistry::new(config.registry.clone());
        let router = router(&config, registry.clone());
        Ok(Server {
            listener,
            addr,
            router,
            registry,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn registry(&self) -> &ModelRegistry {
        &self.registry
    }

    /// Serves until `shutdown` completes; then refuses new requests, ends running ones
    /// (streams get an error event) and stops every engine.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let reaper = self.registry.spawn_idle_reaper();
        let registry = self.registry.clone();
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down");
            registry.shutdown().await;
        };
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stop)
            .await;
        if let Some(r) = reaper {
            r.abort();
        }
        self.registry.shutdown().await;
        Ok(served?)
    }
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
pub fn router(config: &ServerConfig, registry: ModelRegistry) -> Router {
    let origins = OriginPolicy::new(&config.allowed_origins);
    let security = Arc::new(guard::Security {
        loopback_hosts_only: config.host.is_loopback(),
        origins: origins.clone(),
        api_key: config.api_key.clone().filter(|k| !k.is_empty()),
    });
    Router::new()
        .route("/health", get(routes::health))
        .route("/v1/models", get(routes::models))
        .route("/v1/models/{*id}", get(routes::model))
        .route("/v1/engine/stats", get(routes::engine_stats))
        .route("/v1/chat/completions", post(generate::chat))
        .route("/v1/completions", post(generate::completions))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(AppState { registry })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            security.clone(),
            guard::api_key,
        ))
        .layer(guard::cors(origins))
        .layer(middleware::from_fn_with_state(
            security,
            guard::host_and_origin,
        ))
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
