//! The Hugging Face tokenizer folder layout: reads `tokenizer.json`, `tokenizer_config.json`,
//! `special_tokens_map.json`, `generation_config.json` and the chat template files, and writes a
//! folder that transformers and mlx_lm load. Parsing here is lenient about optional files and
//! strict about the ones that exist: a present but broken file is an error naming it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::TokenizerError;

/// Everything `from_dir` reads besides `tokenizer.json` itself.
#[derive(Debug, Default)]
pub(crate) struct DirConfig {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub unk: Option<String>,
    pub pad: Option<String>,
    pub chat_template: Option<String>,
    /// `eos_token_id` of generation_config.json (an int or a list).
    pub generation_eos_ids: Vec<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
}

pub(crate) fn read_text(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TokenizerError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn read_json_opt(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(path)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TokenizerError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

/// A special token is either a string or an AddedToken object `{"content": ...}`.
fn token_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// `chat_template` is a string, or a list of `{name, template}` of which "default" is used.
fn template_from(v: Option<&Value>, path: &Path) -> Result<Option<String>, TokenizerError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let named = |name: &str| {
                list.iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
                    .and_then(|e| e.get("template"))
                    .and_then(Value::as_str)
            };
            Ok(named("default").map(str::to_string))
        }
        Some(_) => Err(TokenizerError::Parse {
            path: path.to_path_buf(),
            detail: "chat_template is neither a string nor a list of {name, template}".into(),
        }),
    }
}

fn ids_from(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .into_iter()
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn read_dir_config(dir: &Path) -> Result<DirConfig, TokenizerError> {
    let config_path = dir.join("tokenizer_config.json");
    let config = read_json_opt(&config_path)?.unwrap_or(Value::Null);
    let map_path = dir.join("special_tokens_map.json");
    let map = read_json_opt(&map_path)?.unwrap_or(Value::Null);
    // tokenizer_config.json wins; special_tokens_map.json only fills gaps (as transformers does).
    let special = |name: &str| token_str(config.get(name)).or_else(|| token_str(map.get(name)));

    let mut chat_template = template_from(config.get("chat_template"), &config_path)?;
    let json_path = dir.join("chat_template.json");
    if let Some(v) = read_json_opt(&json_path)? {
        if let Some(t) = template_from(v.get("chat_template"), &json_path)? {
            chat_template = Some(t);
        }
    }
    // transformers saves the template as chat_template.jinja and prefers it when present.
    let jinja_path = dir.join("chat_template.jinja");
    if jinja_path.exists() {
        chat_template = Some(read_text(&jinja_path)?);
    }

    let gen = read_json_opt(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
    Ok(DirConfig {
        bos: special("bos_token"),
        eos: special("eos_token"),
        unk: special("unk_token"),
        pad: special("pad_token"),
        chat_template,
        generation_eos_ids: ids_from(gen.get("eos_token_id")),
        add_bos: config.get("add_bos_token").and_then(Value::as_bool),
        add_eos: config.get("add_eos_token").and_then(Value::as_bool),
    })
}

pub(crate) struct SaveSpec<'a> {
    pub tokenizer_json: String,
    pub bos: Option<&'a str>,
    pub eos: Option<&'a str>,
    pub unk: Option<&'a str>,
    pub pad: Option<&'a str>,
    pub chat_template: Option<&'a str>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub eos_ids: &'a [u32],
}

fn write(path: PathBuf, text: &str) -> Result<(), TokenizerError> {
    std::fs::write(&path, text).map_err(|e| TokenizerError::Save {
        path,
        detail: e.to_string(),
    })
}

pub(crate) fn save_dir(dir: &Path, spec: &SaveSpec) -> Result<(), TokenizerError> {
    std::fs::create_dir_all(dir).map_err(|e| TokenizerError::Save {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    write(dir.join("tokenizer.json"), &spec.tokenizer_json)?;
    let mut config = serde_json::Map::new();
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    config.insert(
        "model_max_length".into(),
        json!(1_000_000_000_000_000_000u64),
    );
    for (k, v) in [
        ("bos_token", spec.bos),
        ("eos_token", spec.eos),
        ("unk_token", spec.unk),
        ("pad_token", spec.pad),
    ] {
        if let Some(v) = v {
            config.insert(k.into(), json!(v));
        }
    }
    if let Some(b) = spec.add_bos {
        config.insert("add_bos_token".into(), json!(b));
    }
    if let Some(b) = spec.add_eos {
        config.insert("add_eos_token".into(), json!(b));
    }
    if let Some(t) = spec.chat_template {
        config.insert("chat_template".into(), json!(t));
    }
    let text = serde_json::to_string_pretty(&Value::Object(config)).unwrap_or_default();
    write(dir.join("tokenizer_config.json"), &text)?;
    // A model folder's generation_config.json holds sampling defaults too: never overwrite it.
    if !spec.eos_ids.is_empty() && !dir.join("generation_config.json").exists() {
        let gen = json!({"eos_token_id": if spec.eos_ids.len() == 1 { json!(spec.eos_ids[0]) } else { json!(spec.eos_ids) }});
        write(
            dir.join("generation_config.json"),
            &serde_json::to_string_pretty(&gen).unwrap_or_default(),
        )?;
    }
    Ok(())
}
