//! Request fields -> the engine's [`RequestParams`], checked here so a bad value is a 400 that
//! names the parameter. The engine checks again (token ids against its vocabulary, the prompt
//! against its context); its errors are 400s too.
use super::error::ApiError;
use super::openai::{Sampling, Stop};
use cortex_engine::serving::{RequestParams, MAX_TOP_LOGPROBS};
use cortex_engine::SamplerParams;

/// The most stop strings a request may carry, and the longest one.
pub const MAX_STOP: usize = 4;
pub const MAX_STOP_LEN: usize = 256;
/// OpenAI's limit on logit_bias entries (each one is work on every step of the request).
pub const MAX_LOGIT_BIAS: usize = 300;

/// A validated request, waiting for its prompt length to fix the default `max_tokens`.
#[derive(Debug)]
pub struct Plan {
    pub params: RequestParams,
    pub max_tokens: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
}

impl Plan {
    /// The engine's parameters for a prompt of `prompt_len` tokens: without an explicit
    /// max_tokens a request may fill the context.
    pub fn params_for(&self, prompt_len: usize, max_context: usize) -> RequestParams {
        let mut p = self.params.clone();
        p.max_tokens = self
            .max_tokens
            .unwrap_or_else(|| max_context.saturating_sub(prompt_len).max(1));
        p
    }
}

/// `v` (or `default` when absent) if it is finite and within `lo..=hi` (`lo` itself excluded
/// when `open_low`).
fn bounded(
    param: &str,
    v: Option<f32>,
    default: f32,
    (lo, hi): (f32, f32),
    open_low: bool,
) -> Result<f32, ApiError> {
    let Some(x) = v else {
        return Ok(default);
    };
    let above_low = if open_low { x > lo } else { x >= lo };
    if x.is_finite() && above_low && x <= hi {
        return Ok(x);
    }
    let open = if open_low { '(' } else { '[' };
    Err(ApiError::invalid_param(
        param,
        format!("{param} must be in {open}{lo}, {hi}], got {x}"),
    ))
}

fn top_k(k: Option<i64>) -> Result<usize, ApiError> {
    match k {
        None | Some(-1) => Ok(0),
        Some(k) if k >= 0 => Ok(k as usize),
        Some(k) => Err(ApiError::invalid_param(
            "top_k",
            format!("top_k must be >= 0 (or -1 for no limit), got {k}"),
        )),
    }
}

/// Checks the shared fields. `max_tokens` is the endpoint's (chat prefers
/// max_completion_tokens), `logprobs` the number of alternatives asked for.
pub fn plan(
    s: &Sampling,
    max_tokens: Option<i64>,
    logprobs: Option<usize>,
) -> Result<Plan, ApiError> {
    if let Some(n) = s.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid_param(
            "n",
            format!("only n=1 is supported, got {n}"),
        ));
    }
    let sampler = SamplerParams {
        temperature: bounded("temperature", s.temperature, 1.0, (0.0, 2.0), false)?,
        top_k: top_k(s.top_k)?,
        top_p: bounded("top_p", s.top_p, 1.0, (0.0, 1.0), true)?,
        min_p: bounded("min_p", s.min_p, 0.0, (0.0, 1.0), false)?,
        // OpenAI seeds are signed 64-bit; any value is a valid seed
        seed: s.seed.map(|x| x as u64),
        repetition_penalty: bounded(
            "repetition_penalty",
            s.repetition_penalty,
            1.0,
            (0.0, 10.0),
            true,
        )?,
        presence_penalty: bounded(
            "presence_penalty",
            s.presence_penalty,
            0.0,
            (-2.0, 2.0),
            false,
        )?,
        frequency_penalty: bounded(
            "frequency_penalty",
            s.frequency_penalty,
            0.0,
            (-2.0, 2.0),
            false,
        )?,
        logit_bias: logit_bias(s)?,
    };
    let max_tokens = match max_tokens.or(s.max_tokens) {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!("max_tokens must be at least 1, got {n}"),
            ))
        }
    };
    let params = RequestParams {
        max_tokens: 0,
        sampler,
        stop: stop_strings(s.stop.as_ref())?,
        stop_token_ids: Vec::new(),
        ignore_eos: s.ignore_eos.unwrap_or(false),
        logprobs,
    };
    let stream = s.stream.unwrap_or(false);
    Ok(Plan {
        params,
        max_tokens,
        stream,
        include_usage: stream && s.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

fn stop_strings(stop: Option<&Stop>) -> Result<Vec<String>, ApiError> {
    let list = match stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if list.len() > MAX_STOP {
        return Err(ApiError::invalid_param(
            "stop",
            format!(
                "at most {MAX_STOP} stop strings are supported, got {}",
                list.len()
            ),
        ));
    }
    if let Some(bad) = list.iter().find(|s| s.is_empty() || s.len() > MAX_STOP_LEN) {
        return Err(ApiError::invalid_param(
            "stop",
            format!(
                "stop strings must have 1 to {MAX_STOP_LEN} bytes, got {} bytes",
                bad.len()
            ),
        ));
    }
    Ok(list)
}

fn logit_bias(s: &Sampling) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(map) = &s.logit_bias else {
        return Ok(Vec::new());
    };
    if map.len() > MAX_LOGIT_BIAS {
        return Err(ApiError::invalid_param(
            "logit_bias",
            format!(
                "logit_bias may hold at most {MAX_LOGIT_BIAS} tokens, got {}",
                map.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (k, &v) in map {
        let id: u32 = k.trim().parse().map_err(|_| {
            ApiError::invalid_param(
                "logit_bias",
                format!("logit_bias keys must be token ids, got {k:?}"),
            )
        })?;
        if !(v.is_finite() && (-100.0..=100.0).contains(&v)) {
            return Err(ApiError::invalid_param(
                "logit_bias",
                format!("logit_bias values must be in [-100, 100], got {v} for token {id}"),
            ));
        }
        out.push((id, v));
    }
    out.sort_by_key(|&(id, _)| id);
    Ok(out)
}

/// Chat: `logprobs: true` plus an optional `top_logprobs` count.
pub fn chat_logprobs(logprobs: Option<bool>, top: Option<i64>) -> Result<Option<usize>, ApiError> {
    let on = logprobs.unwrap_or(false);
    match top {
        Some(_) if !on => Err(ApiError::invalid_param(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        )),
        Some(n) if !(0..=MAX_TOP_LOGPROBS as i64).contains(&n) => Err(ApiError::invalid_param(
            "top_logprobs",
            format!("top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {n}"),
        )),
        Some(n) => Ok(Some(n as usize)),
        None => Ok(on.then_some(0)),
    }
}

/// Completions: `logprobs: n`, the alternatives per token.
pub fn completion_logprobs(n: Option<i64>) -> Result<Option<usize>, ApiError> {
    match n {
        None => Ok(None),
        Some(n) if (0..=MAX_TOP_LOGPROBS as i64).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::invalid_param(
            "logprobs",
            format!("logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {n}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(json: &str) -> Sampling {
        serde_json::from_str(json).unwrap()
    }

    fn param_of(json: &str) -> Option<String> {
        plan(&sampling(json), None, None).unwrap_err().param
    }

    #[test]
    fn defaults_follow_openai() {
        let p = plan(&sampling("{}"), None, None).unwrap();
        assert_eq!(p.params.sampler.temperature, 1.0);
        assert_eq!(p.params.sampler.top_p, 1.0);
        assert_eq!(p.params.sampler.repetition_penalty, 1.0);
        assert!(!p.stream && !p.include_usage);
        assert_eq!(p.params_for(10, 100).max_tokens, 90);
    }

    #[test]
    fn out_of_range_values_name_their_parameter() {
        for (json, param) in [
            (r#"{"temperature": -1}"#, "temperature"),
            (r#"{"temperature": 2.5}"#, "temperature"),
            (r#"{"top_p": 0}"#, "top_p"),
            (r#"{"min_p": 1.5}"#, "min_p"),
            (r#"{"top_k": -2}"#, "top_k"),
            (r#"{"n": 2}"#, "n"),
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"presence_penalty": 3}"#, "presence_penalty"),
            (r#"{"frequency_penalty": -2.5}"#, "frequency_penalty"),
            (r#"{"repetition_penalty": 0}"#, "repetition_penalty"),
            (r#"{"stop": ["a","b","c","d","e"]}"#, "stop"),
            (r#"{"stop": ""}"#, "stop"),
            (r#"{"logit_bias": {"x": 1}}"#, "logit_bias"),
            (r#"{"logit_bias": {"5": 101}}"#, "logit_bias"),
        ] {
            assert_eq!(param_of(json).as_deref(), Some(param), "{json}");
        }
    }

    #[test]
    fn values_map_onto_the_engine() {
        let p = plan(
            &sampling(
                r#"{"temperature": 0, "top_k": 5, "seed": -1, "stop": "END", "logit_bias": {"7": -100, "3": 2.5},
                    "stream": true, "stream_options": {"include_usage": true}, "ignore_eos": true, "max_tokens": 9}"#,
            ),
            None,
            Some(2),
        )
        .unwrap();
        let s = &p.params.sampler;
        assert_eq!((s.temperature, s.top_k, s.seed), (0.0, 5, Some(u64::MAX)));
        assert_eq!(s.logit_bias, vec![(3, 2.5), (7, -100.0)]);
        assert_eq!(p.params.stop, vec!["END".to_string()]);
        assert!(p.stream && p.include_usage && p.params.ignore_eos);
        assert_eq!(p.params.logprobs, Some(2));
        assert_eq!(p.params_for(10, 100).max_tokens, 9);
        // chat's max_completion_tokens wins over max_tokens
        let p = plan(&sampling(r#"{"max_tokens": 9}"#), Some(4), None).unwrap();
        assert_eq!(p.max_tokens, Some(4));
    }

    #[test]
    fn logprob_counts() {
        assert_eq!(chat_logprobs(None, None).unwrap(), None);
        assert_eq!(chat_logprobs(Some(true), None).unwrap(), Some(0));
        assert_eq!(chat_logprobs(Some(true), Some(3)).unwrap(), Some(3));
        assert!(chat_logprobs(Some(false), Some(3)).is_err());
        assert!(chat_logprobs(Some(true), Some(21)).is_err());
        assert_eq!(completion_logprobs(Some(5)).unwrap(), Some(5));
        assert!(completion_logprobs(Some(-1)).is_err());
    }
}
