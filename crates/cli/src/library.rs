//! The CLI's way into the service layer's catalog: `cortex list` and `cortex rm`, and the
//! registration of what `pull`, `convert` and `import` made, so a model lands in the same
//! library whichever front end made it. Opening the app here starts no background work (no
//! default-model import, no resumed downloads).
use anyhow::{Context, Result};
use clap::Args;
use cortex_service::{App, AppConfig};
use std::future::Future;
use std::path::Path;

/// Runs `f` with the app opened on this machine's catalog.
pub fn with_app<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = cortex_service::Result<T>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let config = AppConfig {
            ensure_default_model: false,
            resume_unfinished: false,
            ..AppConfig::from_env()
        };
        let app = App::open(config).await?;
        let out = f(app.clone()).await;
        app.shutdown().await;
        out
    })
    .map_err(anyhow::Error::from)
}

/// Registers a pulled snapshot; a failure only warns (the files are there either way).
pub fn register_snapshot(repo: &str, revision: &str, commit: &str, path: &Path) {
    if !path.join("config.json").is_file() {
        return;
    }
    let (repo, revision, commit, path) = (
        repo.to_string(),
        revision.to_string(),
        commit.to_string(),
        path.to_path_buf(),
    );
    let r = with_app(|app| async move {
        app.register_snapshot(&repo, &revision, &commit, &path)
            .await
    });
    if let Err(e) = r {
        eprintln!("warning: not added to the library: {e:#}");
    }
}

pub fn register_converted(src: &Path, dest: &Path) {
    let (src, dest) = (src.to_path_buf(), dest.to_path_buf());
    if let Err(e) = with_app(|app| async move { app.register_converted(&src, &dest).await }) {
        eprintln!("warning: not added to the library: {e:#}");
    }
}

#[derive(Args)]
pub struct ListArgs {
    /// Print JSON (the app API's shapes)
    #[arg(long)]
    json: bool,
}

pub fn list(args: ListArgs) -> Result<()> {
    let lib = with_app(|app| async move { app.list_models().await })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lib)?);
        return Ok(());
    }
    if lib.models.is_empty() {
        println!("no models yet: `cortex pull org/name`, `cortex import FILE.gguf`, or `cortex run default`");
        return Ok(());
    }
    println!(
        "{:<40} {:>9} {:<11} {:<8} {:<12} ID",
        "NAME", "SIZE", "FORMAT", "QUANT", "ARCH"
    );
    for m in &lib.models {
        let i = &m.model.info;
        let quant = i
            .quantization
            .map(|q| format!("{}-bit", q.bits))
            .unwrap_or_else(|| i.dtype.clone().unwrap_or_else(|| "-".into()));
        println!(
            "{:<40} {:>9} {:<11} {:<8} {:<12} {}",
            truncate(&m.model.name, 40),
            human_bytes(i.size_bytes.max(0) as u64),
            i.format.as_str(),
            quant,
            i.architecture.as_deref().unwrap_or("-"),
            m.model.id
        );
    }
    println!("total {}", human_bytes(lib.total_size_bytes));
    Ok(())
}

#[derive(Args)]
pub struct RmArgs {
    /// The model's name or id (see `cortex list`)
    model: String,
}

pub fn rm(args: RmArgs) -> Result<()> {
    let (name, deleted) = with_app(|app| async move {
        let m = app.find_model(&args.model).await?;
        let d = app.delete_model(&m.model.id).await?;
        Ok((m.model.name, d))
    })?;
    if deleted.files_kept {
        println!("removed {name} from the library (its folder is yours and was kept)");
    } else {
        println!("deleted {name}: {} freed", human_bytes(deleted.freed_bytes));
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_finder() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 KB");
        assert_eq!(human_bytes(270_000_000), "270.0 MB");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
