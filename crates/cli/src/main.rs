//! `cortex`: the command line. Each subcommand is a thin adapter over the engine.
mod bench;
mod convert;
mod default_model;
mod info;
mod models;
mod pull;
mod run;
mod search;

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
    /// Import a GGUF file into MLX format in the models folder.
    Import {
        /// The .gguf file
        file: std::path::PathBuf,
        /// Folder name in the models folder (default: the file name without .gguf)
        #[arg(long)]
        name: Option<String>,
    },
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Import { file, name } => import(&file, name),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::bench(args),
        Command::Pull(args) => pull::run(args),
        Command::Search(args) => search::run(args),
        Command::Info(args) => info::run(args),
        Command::Models(args) => models::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn import(file: &std::path::Path, name: Option<String>) -> Result<()> {
    let name = name.or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()));
    let name =
        name.ok_or_else(|| anyhow::anyhow!("cannot derive a model name from {}", file.display()))?;
    let dest = cortex_engine::loader::models_dir().join(&name);
    let out = cortex_engine::gguf_import::import_gguf(file, &dest)?;
    println!("{}", out.display());
    Ok(())
}

/// Resolves a MODEL argument: "default", a folder, a .gguf file, a name in the models folder,
/// or a Hugging Face id / URL (pulled into the HF cache; the engine loads HF safetensors and
/// MLX folders alike, so the snapshot folder is the model).
pub fn resolve_model(spec: &str) -> Result<std::path::PathBuf> {
    let models = cortex_engine::loader::models_dir();
    if spec == "default" {
        return default_model::ensure(&models);
    }
    match cortex_hub::parse_model_ref(spec) {
        Ok(cortex_hub::ModelRef::Hub(model)) => Ok(pull::pull(&model, Vec::new())?.path),
        Ok(cortex_hub::ModelRef::Local(_)) => Ok(cortex_engine::loader::resolve(spec, &models)?),
        Err(e) => Err(anyhow::anyhow!(
            "{spec}: no such local model file or folder, and not a Hugging Face id ({e})"
        )),
    }
}
