//! `cortex serve`: the OpenAI-compatible HTTP API (crates/server, docs/SERVER.md), the app API
//! (docs/APP_API.md) and the web UI at `/`.
use anyhow::{Context, Result};
use clap::Args;
use cortex_server::{RegistryConfig, Server, ServerConfig};
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Load this model at start and keep it loaded (requests may still name any model)
    pub model: Option<String>,
    /// Address to listen on; a non-loopback address exposes the API to the network
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// 0 picks a free port (the printed URL tells which)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` (every route but /health)
    #[arg(long)]
    pub api_key: Option<String>,
    /// Unload a model after this many seconds without requests (0: never)
    #[arg(long, default_value_t = 1800)]
    pub idle_unload: u64,
    /// KV cache memory per model in MB (default: a fraction of device memory)
    #[arg(long)]
    pub kv_memory: Option<usize>,
    /// Tokens per engine step (decode tokens plus prefill chunks)
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// Longest prompt + completion (default: the model's own)
    #[arg(long)]
    pub max_context: Option<usize>,
    /// A browser origin allowed to call the API (repeatable; `http://host:*` for any port,
    /// `*` for all). Default: http://localhost:*, http://127.0.0.1:*, http://[::1]:*, tauri://localhost
    #[arg(long = "allow-origin", value_name = "URL")]
    pub allow_origin: Vec<String>,
    /// Largest request body in MiB
    #[arg(long, default_value_t = 4)]
    pub max_body_mb: usize,
    /// The built web UI to serve at / (default: CORTEX_UI_DIR, next to the binary, or ui/dist)
    #[arg(long, value_name = "DIR")]
    pub ui_dir: Option<std::path::PathBuf>,
}

fn config(args: &ServeArgs) -> ServerConfig {
    let mut registry = RegistryConfig {
        idle_unload: (args.idle_unload > 0).then(|| Duration::from_secs(args.idle_unload)),
        ..RegistryConfig::default()
    };
    if let Some(mb) = args.kv_memory {
        registry.engine.kv_memory_bytes = Some(mb << 20);
    }
    if let Some(n) = args.max_batch_tokens {
        registry.engine.max_batch_tokens = n;
    }
    registry.engine.max_context = args.max_context;
    ServerConfig {
        host: args.host,
        port: args.port,
        api_key: args.api_key.clone(),
        allowed_origins: args.allow_origin.clone(),
        max_body_bytes: args.max_body_mb << 20,
        registry,
        ui_dir: args.ui_dir.clone(),
        ..ServerConfig::default()
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let server = Server::bind(config(&args)).await?;
    if let Some(model) = &args.model {
        eprintln!("loading {model} ...");
        server.registry().preload(model).await?;
    }
    // one stdout line that scripts (and tests/server) wait for
    println!("listening on http://{}", server.local_addr());
    std::io::stdout().flush().ok();
    let stop = async {
        cortex_server::http::shutdown_signal().await;
        eprintln!("shutting down (Ctrl-C again to quit at once)");
        tokio::spawn(async {
            cortex_server::http::shutdown_signal().await;
            std::process::exit(130);
        });
    };
    server.run(stop).await?;
    Ok(())
}
