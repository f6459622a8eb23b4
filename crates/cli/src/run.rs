//! `cortex run`: one answer, or an interactive chat.
use anyhow::{Context, Result};
use clap::Args;
use cortex_engine::generate::{Flow, GenerateParams, Generator};
use cortex_engine::{LoadedModel, SamplerParams};
use cortex_tokenizer::{ChatMessage, ChatOptions};
use std::io::{BufRead, Write};

#[derive(Args)]
pub struct RunArgs {
    /// A model folder, a .gguf file, a name in the models folder, "default", or a Hugging Face id (org/name[@rev])
    pub model: String,
    /// The prompt; without one, an interactive chat starts
    pub prompt: Option<String>,
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// 0 is greedy
    #[arg(long, default_value_t = 0.7)]
    pub temp: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Feed the prompt as-is, without the chat template
    #[arg(long)]
    pub raw: bool,
    /// Print one JSON object with the text, token ids and timings
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunArgs) -> Result<()> {
    let dir = crate::resolve_model(&args.model)?;
    let model = cortex_engine::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        sampler: SamplerParams {
            temperature: args.temp,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: 0.0,
            seed: args.seed,
            ..Default::default()
        },
        stop_token_ids: model.tokenizer.eos_token_ids().to_vec(),
        ..Default::default()
    };
    match &args.prompt {
        Some(p) => answer_once(&model, &args, p, &params),
        None => chat(&model, &args, &params),
    }
}

fn prompt_ids(model: &LoadedModel, args: &RunArgs, history: &[ChatMessage]) -> Result<Vec<u32>> {
    let tok = &model.tokenizer;
    if args.raw || !tok.has_chat_template() {
        let text: String = history
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        return Ok(tok.encode(&text, true)?);
    }
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage::new("system", s));
    }
    messages.extend_from_slice(history);
    let opts = ChatOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let text = tok.apply_chat_template(&messages, &opts)?;
    Ok(tok.encode(&text, false)?)
}

/// Generates, streaming text to stdout unless `quiet`. Returns (text, ids, stats).
fn stream(
    model: &LoadedModel,
    ids: &[u32],
    params: &GenerateParams,
    quiet: bool,
) -> Result<(String, Vec<u32>, cortex_engine::GenerationStats)> {
    let mut decoder = model.tokenizer.incremental_decoder(true);
    let mut text = String::new();
    let mut out = std::io::stdout();
    let mut err = None;
    let (generated, stats) =
        Generator::new(model.model.as_ref()).generate(ids, params, |t| match decoder.push(t) {
            Ok(Some(s)) => {
                if !quiet {
                    let _ = write!(out, "{s}").and_then(|_| out.flush());
                }
                text.push_str(&s);
                Flow::Continue
            }
            Ok(None) => Flow::Continue,
            Err(e) => {
                err = Some(e);
                Flow::Stop
            }
        })?;
    if let Some(e) = err {
        return Err(e.into());
    }
    if let Some(rest) = decoder.flush()? {
        if !quiet {
            print!("{rest}");
        }
        text.push_str(&rest);
    }
    Ok((text, generated, stats))
}

fn answer_once(
    model: &LoadedModel,
    args: &RunArgs,
    prompt: &str,
    params: &GenerateParams,
) -> Result<()> {
    let ids = prompt_ids(model, args, &[ChatMessage::new("user", prompt)])?;
    let (text, generated, stats) = stream(model, &ids, params, args.json)?;
    if args.json {
        let v = serde_json::json!({
            "text": text,
            "token_ids": generated,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "ttft_ms": stats.ttft_ms,
            "prefill_tokens_per_s": stats.prefill_tokens_per_s,
            "decode_tokens_per_s": stats.decode_tokens_per_s,
            "finish_reason": stats.finish_reason,
        });
        println!("{v}");
    } else {
        println!();
    }
    Ok(())
}

fn chat(model: &LoadedModel, args: &RunArgs, params: &GenerateParams) -> Result<()> {
    eprintln!(
        "Chatting with {} (Ctrl-D or /bye to quit)",
        model.dir.display()
    );
    let mut history: Vec<ChatMessage> = Vec::new();
    let stdin = std::io::stdin();
    loop {
        eprint!(">>> ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/bye" || line == "/exit" {
            break;
        }
        history.push(ChatMessage::new("user", line));
        let ids = prompt_ids(model, args, &history)?;
        let (text, _, _) = stream(model, &ids, params, false)?;
        println!();
        history.push(ChatMessage::new("assistant", text.trim()));
    }
    Ok(())
}
