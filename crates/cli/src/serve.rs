//! `cortex serve`: the OpenAI-compatible HTTP API (crates/server, docs/SERVER.md), the app API
//! (docs/APP_API.md) and the web UI at `/`.
use anyhow::{bail, Context, Result};
use clap::Args;
use cortex_server::{RegistryConfig, Server, ServerConfig};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable `cortex serve` reads the API key from when no flag gives one.
pub const API_KEY_ENV: &str = "CORTEX_API_KEY";

const DEFAULT_MAX_QUEUE: usize = cortex_server::http::DEFAULT_MAX_QUEUE;
const DEFAULT_MAX_LOADED: usize = cortex_service::DEFAULT_MAX_LOADED;
const DEFAULT_BUSY_WAIT: Duration = cortex_service::DEFAULT_BUSY_WAIT;
const DEFAULT_QUEUE_TIMEOUT_S: u64 = cortex_server::http::DEFAULT_QUEUE_TIMEOUT.as_secs();

#[derive(Args)]
#[command(
    after_help = "API key: --api-key-file PATH (the file's first line), else --api-key KEY, \
else the environment variable CORTEX_API_KEY. Prefer the file or the variable: any user of the \
machine can read a command line in the process list."
)]
pub struct ServeArgs {
    /// Load this model at start and keep it loaded (requests may still name any model)
    pub model: Option<String>,
    /// Address to listen on; a non-loopback address exposes the API to the network
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// 0 picks a free port (the printed URL tells which)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` (every route but /health). Visible to other users
    /// in the process list: prefer CORTEX_API_KEY or --api-key-file
    #[arg(long, value_name = "KEY", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Read the API key from the first line of this file (keep it readable only by you)
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
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
    /// Requests per model that may wait for their first token; more are refused with 503 and
    /// Retry-After (0: no limit)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_QUEUE)]
    pub max_queue: usize,
    /// Seconds a request may wait for its first token before it is refused with 503 (0: no
    /// limit); streams that produce tokens are never cut
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_QUEUE_TIMEOUT_S)]
    pub queue_timeout: u64,
    /// The built web UI to serve at / (default: CORTEX_UI_DIR, next to the binary, or ui/dist)
    #[arg(long, value_name = "DIR")]
    pub ui_dir: Option<std::path::PathBuf>,
    /// Serve only models already here: requests may not download models or name files by path,
    /// and the app API's downloads, imports, conversions and settings changes are refused.
    /// On by default when --host is not loopback or --allow-origin is `*`
    #[arg(long, conflicts_with = "allow_pulls")]
    pub library_only: bool,
    /// Allow downloads and model paths over HTTP even when the server is reachable by others
    #[arg(long)]
    pub allow_pulls: bool,
    /// Refuse downloads larger than this many GB (a request naming a bigger Hugging Face
    /// model gets 413); 0: no limit
    #[arg(long, value_name = "GB", default_value_t = 0.0)]
    pub max_download_gb: f64,
    /// Models loaded at once; loading another unloads the least recently used idle one
    /// (0: no limit)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LOADED)]
    pub max_loaded: usize,
    /// When --max-loaded models are loaded and each is answering, how long a request for
    /// another waits for one to finish before it gets 503 busy
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_BUSY_WAIT.as_secs())]
    pub load_wait: u64,
}

/// `args` as the server's configuration; `env_key` is the value of [`API_KEY_ENV`].
fn config(args: &ServeArgs, env_key: Option<String>) -> Result<ServerConfig> {
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
    registry.max_loaded = (args.max_loaded > 0).then_some(args.max_loaded);
    registry.busy_wait = Duration::from_secs(args.load_wait);
    if !(args.max_download_gb >= 0.0 && args.max_download_gb.is_finite()) {
        bail!("--max-download-gb must be a non-negative number");
    }
    registry.max_download_bytes =
        (args.max_download_gb > 0.0).then_some((args.max_download_gb * 1e9) as u64);
    Ok(ServerConfig {
        host: args.host,
        port: args.port,
        api_key: api_key(args, env_key)?,
        allowed_origins: args.allow_origin.clone(),
        max_body_bytes: args.max_body_mb << 20,
        max_queue: (args.max_queue > 0).then_some(args.max_queue),
        queue_timeout: (args.queue_timeout > 0).then(|| Duration::from_secs(args.queue_timeout)),
        registry,
        ui_dir: args.ui_dir.clone(),
        library_only: match (args.library_only, args.allow_pulls) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        ..ServerConfig::default()
    })
}

/// The API key: `--api-key-file`, else `--api-key`, else the environment (an empty variable
/// counts as unset). A key given but empty is an error, never "no key".
fn api_key(args: &ServeArgs, env_key: Option<String>) -> Result<Option<String>> {
    if let Some(path) = &args.api_key_file {
        return read_key_file(path).map(Some);
    }
    if let Some(key) = &args.api_key {
        let key = key.trim();
        if key.is_empty() {
            bail!("--api-key is empty");
        }
        eprintln!(
            "warning: other users can read --api-key in the process list; \
             prefer {API_KEY_ENV} or --api-key-file"
        );
        return Ok(Some(key.to_string()));
    }
    Ok(env_key
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty()))
}

fn read_key_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the API key file {}", path.display()))?;
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        bail!("the API key file {} is empty", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            eprintln!(
                "warning: other users may read the API key file {} (chmod 600 it)",
                path.display()
            );
        }
    }
    Ok(key.to_string())
}

pub fn run(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let config = config(&args, std::env::var(API_KEY_ENV).ok())?;
    let server = Server::bind(config).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs> {
        let argv = std::iter::once("serve").chain(args.iter().copied());
        Ok(Cli::try_parse_from(argv)?.serve)
    }

    fn key_of(args: &[&str], env: Option<&str>) -> Result<Option<String>> {
        Ok(config(&parse(args)?, env.map(str::to_string))?.api_key)
    }

    #[test]
    fn api_key_from_a_file_the_environment_or_the_flag() {
        let dir = std::env::temp_dir().join(format!("cortex-serve-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        let file = file.to_str().unwrap();

        assert_eq!(key_of(&[], None).unwrap(), None);
        assert_eq!(key_of(&[], Some("")).unwrap(), None);
        assert_eq!(
            key_of(&[], Some("from-env")).unwrap().as_deref(),
            Some("from-env")
        );
        assert_eq!(
            key_of(&["--api-key-file", file], Some("from-env"))
                .unwrap()
                .as_deref(),
            Some("from-file")
        );
        assert_eq!(
            key_of(&["--api-key", "from-argv"], Some("from-env"))
                .unwrap()
                .as_deref(),
            Some("from-argv")
        );
        // one flag or the other, and never a silently empty key
        assert!(parse(&["--api-key", "a", "--api-key-file", file]).is_err());
        assert!(key_of(&["--api-key", " "], None).is_err());
        std::fs::write(dir.join("empty"), "\n").unwrap();
        let empty = dir.join("empty");
        assert!(key_of(&["--api-key-file", empty.to_str().unwrap()], None).is_err());
        let missing = dir.join("missing");
        assert!(key_of(&["--api-key-file", missing.to_str().unwrap()], None).is_err());
        let _ = std::fs::remove_dir_all(&dir);

        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--api-key-file"), "{help}");
        assert!(help.contains(API_KEY_ENV), "{help}");
    }

    #[test]
    fn library_only_follows_exposure_unless_a_flag_says_otherwise() {
        let cfg = |args: &[&str]| config(&parse(args).unwrap(), Some("k".into())).unwrap();
        assert!(!cfg(&[]).serves_library_only());
        assert!(cfg(&["--host", "0.0.0.0"]).serves_library_only());
        assert!(cfg(&["--allow-origin", "*"]).serves_library_only());
        assert!(!cfg(&["--host", "0.0.0.0", "--allow-pulls"]).serves_library_only());
        assert!(cfg(&["--library-only"]).serves_library_only());
        assert!(parse(&["--library-only", "--allow-pulls"]).is_err());
    }

    #[test]
    fn download_and_loaded_model_caps() {
        let cfg = |args: &[&str]| parse(args).and_then(|a| config(&a, None));
        let default = cfg(&[]).unwrap().registry;
        assert_eq!(default.max_download_bytes, None);
        assert_eq!(default.max_loaded, Some(DEFAULT_MAX_LOADED));
        assert_eq!(default.busy_wait, DEFAULT_BUSY_WAIT);
        let set = cfg(&[
            "--max-download-gb",
            "2.5",
            "--max-loaded",
            "1",
            "--load-wait",
            "5",
        ])
        .unwrap()
        .registry;
        assert_eq!(set.max_download_bytes, Some(2_500_000_000));
        assert_eq!(set.max_loaded, Some(1));
        assert_eq!(set.busy_wait, Duration::from_secs(5));
        assert_eq!(
            cfg(&["--max-loaded", "0"]).unwrap().registry.max_loaded,
            None
        );
        assert!(cfg(&["--max-download-gb=-1"]).is_err());
        assert!(cfg(&["--max-download-gb", "nan"]).is_err());
    }

    #[test]
    fn queue_limits_have_defaults_and_zero_turns_them_off() {
        let c = config(&parse(&[]).unwrap(), None).unwrap();
        assert_eq!(c.max_queue, Some(256));
        assert_eq!(c.queue_timeout, Some(Duration::from_secs(300)));
        let args = parse(&["--max-queue", "8", "--queue-timeout", "5"]).unwrap();
        let c = config(&args, None).unwrap();
        assert_eq!(c.max_queue, Some(8));
        assert_eq!(c.queue_timeout, Some(Duration::from_secs(5)));
        let args = parse(&["--max-queue", "0", "--queue-timeout", "0"]).unwrap();
        let c = config(&args, None).unwrap();
        assert_eq!((c.max_queue, c.queue_timeout), (None, None));
    }
}
