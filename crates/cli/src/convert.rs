//! `cortex convert`: Hugging Face safetensors folder -> MLX format folder, with line-based
//! progress on stderr. A thin adapter over `cortex_hub::convert`; the result is added to the
//! library through the service layer.
use anyhow::Result;
use clap::Args;
use cortex_hub::convert::{self, ConvertOptions, ConvertProgress, QuantizeOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct ConvertArgs {
    /// Hugging Face model folder (config.json + *.safetensors)
    src: PathBuf,
    /// Output folder (default: <models folder>/<src name>-mlx[-<bits>bit])
    #[arg(short = 'o', long = "output")]
    dst: Option<PathBuf>,
    /// Quantize Linear and Embedding weights (MLX affine)
    #[arg(short = 'q', long = "quantize")]
    quantize: bool,
    /// Bits per weight when quantizing: 2, 3, 4, 5, 6 or 8
    #[arg(long, default_value_t = 4)]
    q_bits: i32,
    /// Quantization group size: 32, 64 or 128
    #[arg(long, default_value_t = 64)]
    q_group_size: i32,
    /// Dtype of floating tensors (default: the config's torch_dtype)
    #[arg(long, value_parser = ["float16", "bfloat16", "float32"])]
    dtype: Option<String>,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let opts = ConvertOptions {
        quantize: args.quantize.then_some(QuantizeOptions {
            bits: args.q_bits,
            group_size: args.q_group_size,
        }),
        dtype: args
            .dtype
            .as_deref()
            .map(convert::parse_dtype)
            .transpose()?,
        ..Default::default()
    };
    let dst = args.dst.unwrap_or_else(|| {
        cortex_engine::loader::models_dir().join(convert::default_dest_name(&args.src, &opts))
    });
    let start = Instant::now();
    let mut last_line = Instant::now();
    let report = convert::convert(&args.src, &dst, &opts, &mut |p| {
        // One line per tensor would flood the terminal on a 700-tensor model: at most ~4/s.
        if p.tensors_done == p.tensors_total || last_line.elapsed().as_millis() >= 250 {
            print_progress(p);
            last_line = Instant::now();
        }
        ControlFlow::Continue(())
    })?;
    eprintln!(
        "converted {} tensors ({} quantized layers) into {} shard(s), {:.1} MB, in {:.2}s",
        report.tensors,
        report.quantized_layers,
        report.shards,
        report.bytes as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    crate::library::register_converted(&args.src, &report.dest);
    println!("{}", report.dest.display());
    Ok(())
}

fn print_progress(p: &ConvertProgress) {
    let pct = if p.bytes_total > 0 {
        100.0 * p.bytes_done as f64 / p.bytes_total as f64
    } else {
        100.0
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "[{:>5.1}%] tensor {}/{}  {:.1}/{:.1} MB  shard {}/{}  {}",
        pct,
        p.tensors_done,
        p.tensors_total,
        p.bytes_done as f64 / 1e6,
        p.bytes_total as f64 / 1e6,
        (p.shards_written + 1).min(p.shards_total),
        p.shards_total,
        p.tensor
    );
}
