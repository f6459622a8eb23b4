//! `cortex info`: what a hub model is and whether it runs here, before downloading it.
//! A thin adapter over `cortex_hub::search::details`.
use anyhow::{bail, Result};
use clap::Args;
use cortex_hub::download::HubConfig;
use cortex_hub::search::{details, DetailsOptions, Fit, ModelDetails};
use cortex_hub::{parse_model_ref, ModelRef};

#[derive(Args)]
pub struct InfoArgs {
    /// org/name, org/name@revision, or a huggingface.co URL
    pub model: String,
    /// Context length (tokens) for the memory estimate
    #[arg(long, default_value_t = 4096)]
    pub context: u64,
    /// Print JSON (every field, the card included)
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let model = match parse_model_ref(&args.model)? {
        ModelRef::Hub(m) => m,
        ModelRef::Local(p) => bail!(
            "{} is not a Hugging Face model id (expected org/name)",
            p.display()
        ),
    };
    let opts = DetailsOptions {
        context: args.context,
        ..DetailsOptions::default()
    };
    let d = details(&HubConfig::from_env(), &model, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", text(&d));
    }
    Ok(())
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn text(d: &ModelDetails) -> String {
    let mut o = format!(
        "{}  (commit {})\n",
        d.id,
        &d.commit[..d.commit.len().min(12)]
    );
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    o += &format!("license:     {}\n", opt(&d.license));
    o += &format!("gated:       {:?}\n", d.gated);
    o += &format!(
        "parameters:  {}\n",
        d.parameters.map_or("-".into(), |p| p.to_string())
    );
    o += &format!("model_type:  {}\n", opt(&d.model_type));
    o += &format!(
        "supported:   {} ({})\n",
        if d.supported { "yes" } else { "no" },
        d.support_note
    );
    o += &format!("downloads:   {}   likes: {}\n", d.downloads, d.likes);
    o += &format!("files ({}, {} total):\n", d.files.len(), gib(d.total_bytes));
    for f in &d.files {
        o += &format!("  {:>12}  {}\n", f.size, f.path);
    }
    let m = &d.memory;
    o += &format!("memory at {} tokens of context:\n", m.context);
    o += &format!("  weights  {}\n", gib(m.weights_bytes));
    match m.kv_bytes_per_token {
        Some(per) => o += &format!("  KV cache {} ({per} bytes/token)\n", gib(m.kv_bytes)),
        None => o += "  KV cache unknown (no attention shape in config.json)\n",
    }
    o += &format!("  total    {}", gib(m.total_bytes));
    match (m.system_bytes, m.fit) {
        (Some(sys), Some(fit)) => {
            let verdict = match fit {
                Fit::Fits => "fits",
                Fit::Tight => "tight",
                Fit::TooBig => "too big",
            };
            o += &format!(" of {} here: {verdict}\n", gib(sys));
        }
        _ => o += " (this machine's memory is unknown)\n",
    }
    if let Some(card) = &d.card {
        o += "\n";
        o += card;
        if d.card_truncated {
            o += "\n[...]";
        }
        o += "\n";
    }
    o
}
