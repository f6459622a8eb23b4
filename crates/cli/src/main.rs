//! `cortex`: the command line. Each subcommand is a thin adapter over the service layer (and,
//! for runs and benchmarks, the engine).
mod accuracy;
mod bench;
mod bench_serving;
mod convert;
mod info;
mod library;
mod models;
mod pull;
mod run;
mod search;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cortex", version, about = "Run local LLMs on MLX")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one prompt, or chat interactively when no prompt is given.
    Run(run::RunArgs),
    /// Import a GGUF file (into MLX format in the models folder) or a model folder into the library.
    Import {
        /// The .gguf file or model folder
        file: std::path::PathBuf,
        /// Name in the library (default: the file name without .gguf)
        #[arg(long)]
        name: Option<String>,
    },
    /// List the models in the library.
    List(library::ListArgs),
    /// Delete a model from the library (and its files, when the app made them).
    Rm(library::RmArgs),
    /// Convert a Hugging Face safetensors model to MLX format (optionally quantized).
    Convert(convert::ConvertArgs),
    /// Download a model from the Hugging Face hub into the shared HF cache.
    Pull(pull::PullArgs),
    /// Search the Hugging Face hub for models.
    Search(search::SearchArgs),
    /// Show a hub model's files, license, support here and memory needs, without downloading.
    Info(info::InfoArgs),
    /// List the architectures and weight formats this build runs.
    Models(models::ModelsArgs),
    /// Measure prefill and decode speed; prints JSON.
    Bench(bench::BenchArgs),
    /// Serve models over an OpenAI-compatible HTTP API (docs/SERVER.md).
    Serve(serve::ServeArgs),
}

fn main() {
    // before anything else: OpenBLAS reads its settings when it loads (see cortex_mlx::blas)
    cortex_mlx::reexec_with_blas_env();
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve(_)));
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Import { file, name } => import(&file, name),
        Command::List(args) => library::list(args),
        Command::Rm(args) => library::rm(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::bench(args),
        Command::Pull(args) => pull::run(args),
        Command::Search(args) => search::run(args),
        Command::Info(args) => info::run(args),
        Command::Models(args) => models::run(args),
        Command::Serve(args) => serve::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn import(file: &std::path::Path, name: Option<String>) -> Result<()> {
    let path = std::path::absolute(file)?;
    let req = cortex_service::library::ImportRequest { path, name };
    let m = library::with_app(|app| async move { app.import_model(req).await })?;
    eprintln!("added {} to the library", m.model.name);
    println!("{}", m.model.path.display());
    Ok(())
}

/// Log lines on stderr. The server logs every request; other commands only show what the
/// service layer says (e.g. "importing the default model") and warnings. RUST_LOG overrides.
fn init_logging(serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving {
        "info"
    } else {
        "warn,cortex_server=info,cortex_service=info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if serving {
        builder.init();
    } else {
        builder.without_time().with_target(false).init();
    }
}

/// Resolves a MODEL argument with the service layer ("default", a folder, a .gguf file, a name
/// in the models folder, or a Hugging Face id / URL), drawing progress bars for downloads.
pub fn resolve_model(spec: &str) -> Result<std::path::PathBuf> {
    use cortex_service::{resolve_model, ServiceError};
    let models = cortex_engine::loader::models_dir();
    let pull = |m: &cortex_hub::HubModel| pull::download_with_bars(m, Vec::new());
    match resolve_model(spec, &models, &pull) {
        Err(ServiceError::Download {
            model,
            error: cortex_hub::download::DownloadError::Cancelled,
        }) => Err(pull::cancelled(&model)),
        r => Ok(r?),
    }
}
