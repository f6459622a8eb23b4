//! `cortex search`: find models on the Hugging Face hub; a table or JSON. A thin adapter over
//! `cortex_hub::search::search`.
use anyhow::Result;
use clap::{Args, ValueEnum};
use cortex_hub::download::HubConfig;
use cortex_hub::search::{search, ModelSummary, SearchQuery, SortKey};

#[derive(Clone, Copy, ValueEnum)]
pub enum Sort {
    Downloads,
    Likes,
    Trending,
    Updated,
}

#[derive(Args)]
pub struct SearchArgs {
    /// Text the model id contains
    pub query: String,
    /// Only models of this user or organization
    #[arg(long)]
    pub author: Option<String>,
    /// Only MLX-format models (the `mlx` library tag)
    #[arg(long)]
    pub mlx_only: bool,
    /// Order, most first
    #[arg(long, value_enum, default_value = "downloads")]
    pub sort: Sort,
    /// Models to list
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SearchArgs) -> Result<()> {
    let query = SearchQuery {
        query: args.query,
        author: args.author,
        mlx_only: args.mlx_only,
        sort: match args.sort {
            Sort::Downloads => SortKey::Downloads,
            Sort::Likes => SortKey::Likes,
            Sort::Trending => SortKey::Trending,
            Sort::Updated => SortKey::Updated,
        },
        limit: args.limit,
    };
    let models = search(&HubConfig::from_env(), &query)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&models)?);
    } else {
        print!("{}", table(&models));
    }
    Ok(())
}

fn table(models: &[ModelSummary]) -> String {
    let width = models.iter().map(|m| m.id.len()).max().unwrap_or(0).max(5);
    let mut out = format!(
        "{:<width$}  {:>10}  {:>7}  {:<10}  {:<12}\n",
        "MODEL", "DOWNLOADS", "LIKES", "UPDATED", "LIBRARY"
    );
    for m in models {
        let updated = m
            .last_modified
            .as_deref()
            .map_or("", |d| d.get(..10).unwrap_or(d));
        out += &format!(
            "{:<width$}  {:>10}  {:>7}  {:<10}  {:<12}\n",
            m.id,
            m.downloads,
            m.likes,
            updated,
            m.library_name.as_deref().unwrap_or("")
        );
    }
    out
}
