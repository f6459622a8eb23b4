//! Chat templates: compiles a Hugging Face Jinja chat template with MiniJinja and renders it the
//! way `transformers`' `apply_chat_template(..., tokenize=False)` does (Jinja2 with
//! trim_blocks/lstrip_blocks, loop controls, `raise_exception`, `strftime_now`, HF's `tojson`,
//! Python string methods, Python value spelling). Templates are untrusted input: rendering is
//! bounded by fuel (MiniJinja charges instructions and every byte a template builds, so it bounds
//! time and memory together), the size of the rendered prompt, a recursion limit, a range-size
//! limit and the number of renders running at once, each surfacing as a typed error.

use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Rest, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use serde::{Deserialize, Serialize};

use crate::error::{TemplateErrorKind, TokenizerError};
use crate::pyfmt::{self, JsonOpts};

/// Fuel a render may burn. MiniJinja charges one fuel per instruction and one per 64 bytes a
/// template creates (strings built with `~`, `+`, `*`, filter results, output), so this also caps
/// what a hostile template can allocate: 4M fuel is at most 256 MiB of data in all, about a third
/// of a second of instructions. The hungriest golden template renders a 100-message conversation
/// of 2 KB turns on 0.5% of it (tests/templates.rs checks the headroom).
pub const FUEL: u64 = 4_000_000;
/// Largest prompt a render may produce. Far beyond any context window (a token is at least a
/// byte), and four times the HTTP body limit, so only a runaway template reaches it.
pub const MAX_RENDER_BYTES: usize = 16 << 20;
/// Renders that may run at once; more wait. With the fuel cap this bounds the memory all renders
/// together can take (4 x 256 MiB in the worst case) however many requests arrive.
pub const MAX_CONCURRENT_RENDERS: usize = 4;
const RECURSION_LIMIT: usize = 200;
/// Largest `range()` a template may build (MiniJinja's own bound, reported as a limit error).
const MAX_RANGE: i64 = 100_000;
const NAME: &str = "chat_template";

/// One chat message. Extra fields (tool_calls, name, tool_call_id, reasoning_content, ...) are
/// passed through to the template as they are; `None` fields are dropped, as transformers does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatOptions {
    pub add_generation_prompt: bool,
    /// JSON schemas of the tools, as transformers passes `tools`.
    #[serde(default)]
    pub tools: Option<serde_json::Value>,
    /// Extra template variables, e.g. `enable_thinking`; they override the special tokens.
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The wall-clock time `strftime_now` reports. `None` reads the local clock at render time,
    /// which is what a chat wants; tests and golden generators pin an instant here so a
    /// template that prints today's date renders the same on every day and in every time zone.
    #[serde(skip)]
    pub now: Option<chrono::NaiveDateTime>,
}

/// The special tokens a template sees as `bos_token`, `eos_token`, ... (absent ones are undefined).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub unk: Option<String>,
    pub pad: Option<String>,
}

/// A compiled chat template; cheap to clone and shareable across threads.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .finish()
    }
}

/// The marker error raised by `raise_exception`, found again in the error chain after rendering.
#[derive(Debug)]
struct Raised(String);
impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Raised {}

/// The marker error for an over-large `range()`.
#[derive(Debug)]
struct RangeLimit;
impl std::fmt::Display for RangeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "range() larger than {MAX_RANGE} items")
    }
}
impl std::error::Error for RangeLimit {}

impl ChatTemplate {
    /// The template source as given (before the `{% generation %}` rewrite).
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn compile(source: &str) -> Result<Self, TokenizerError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(map_error)?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| {
            let mut s = String::new();
            pyfmt::py_str(&mut s, value);
            out.write_str(&s).map_err(Error::from)
        });
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_function("range", range);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, rewrite_generation_tags(source))
            .map_err(map_error)?;
        Ok(Self {
            env: Arc::new(env),
            source: source.to_string(),
        })
    }

    /// Renders like [`render`](Self::render) and also reports the fuel the render burned.
    pub fn render_measured(
        &self,
        messages: &[ChatMessage],
        opts: &ChatOptions,
        special: &SpecialTokens,
    ) -> Result<Rendered, TokenizerError> {
        let mut ctx = serde_json::Map::new();
        let specials = [
            ("bos_token", &special.bos),
            ("eos_token", &special.eos),
            ("unk_token", &special.unk),
            ("pad_token", &special.pad),
        ];
        for (name, tok) in specials {
            if let Some(t) = tok {
                ctx.insert(name.into(), t.clone().into());
            }
        }
        for (k, v) in &opts.extra {
            ctx.insert(k.clone(), v.clone());
        }
        let msgs: Vec<serde_json::Value> = messages.iter().map(message_value).collect();
        ctx.insert("messages".into(), msgs.into());
        ctx.insert(
            "tools".into(),
            opts.tools.clone().unwrap_or(serde_json::Value::Null),
        );
        ctx.insert("documents".into(), serde_json::Value::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            opts.add_generation_prompt.into(),
        );
        let now = opts
            .now
            .unwrap_or_else(|| chrono::Local::now().naive_local());
        let tmpl = self.env.get_template(NAME).map_err(map_error)?;
        let pairs = ctx
            .iter()
            .map(|(k, v)| (k.as_str(), json_to_value(v)))
            .chain([(CLOCK, Value::from_object(Clock(now)))]);
        let _permit = RenderPermit::acquire();
        let mut out = CappedOutput::default();
        let captured = tmpl.render_captured_to(Value::from_pairs(pairs), &mut out);
        if out.overflowed {
            return Err(TokenizerError::Template {
                kind: TemplateErrorKind::LimitExceeded,
                message: format!(
                    "the rendered prompt is larger than {} MiB",
                    MAX_RENDER_BYTES >> 20
                ),
            });
        }
        let fuel = captured
            .map_err(map_error)?
            .state()
            .fuel_levels()
            .map_or(0, |(used, _)| used);
        let text = String::from_utf8(out.buf).map_err(|_| TokenizerError::Template {
            kind: TemplateErrorKind::Render,
            message: "the rendered prompt is not UTF-8".into(),
        })?;
        Ok(Rendered { text, fuel })
    }

    pub fn render(
        &self,
        messages: &[ChatMessage],
        opts: &ChatOptions,
        special: &SpecialTokens,
    ) -> Result<String, TokenizerError> {
        self.render_measured(messages, opts, special)
            .map(|r| r.text)
    }
}

/// A render's prompt and the fuel it burned (for checking the budget's headroom).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub fuel: u64,
}

/// The render output, refusing to grow past [`MAX_RENDER_BYTES`].
#[derive(Default)]
struct CappedOutput {
    buf: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_RENDER_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A slot among the [`MAX_CONCURRENT_RENDERS`]; waits for one to free up.
struct RenderPermit;

static RENDERS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl RenderPermit {
    fn acquire() -> Self {
        let (lock, freed) = &RENDERS;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= MAX_CONCURRENT_RENDERS {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        RenderPermit
    }
}

impl Drop for RenderPermit {
    fn drop(&mut self) {
        let (lock, freed) = &RENDERS;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        freed.notify_one();
    }
}

/// A message as transformers hands it to the template: a dict without `None` values.
fn message_value(m: &ChatMessage) -> serde_json::Value {
    let mut v = serde_json::to_value(m).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut v {
        map.retain(|_, val| !val.is_null());
    }
    v
}

/// JSON to a template value, keeping object key order (Python dicts keep insertion order).
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(json_to_value).collect::<Vec<_>>()),
        J::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), json_to_value(v))))
        }
    }
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, "raise_exception called").with_source(Raised(msg)))
}

/// The render's clock, handed to `strftime_now` through the context under a name no template
/// uses (a template that shadows it only changes its own output).
const CLOCK: &str = "__cortex_render_clock";

#[derive(Debug)]
struct Clock(chrono::NaiveDateTime);
impl minijinja::value::Object for Clock {}

fn strftime_now(state: &State, fmt: String) -> Result<Value, Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(&fmt).collect();
    // chrono panics when displaying an invalid specifier, so reject those first.
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("bad strftime format {fmt:?}"),
        ));
    }
    let mut out = String::new();
    use std::fmt::Write;
    write!(
        out,
        "{}",
        render_clock(state)?.format_with_items(items.into_iter())
    )
    .map_err(|_| Error::new(ErrorKind::InvalidOperation, "strftime failed"))?;
    Ok(Value::from(out))
}

fn render_clock(state: &State) -> Result<chrono::NaiveDateTime, Error> {
    state
        .lookup(CLOCK)
        .and_then(|v| v.downcast_object_ref::<Clock>().map(|c| c.0))
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "strftime_now has no clock"))
}

/// Python's `range`, bounded: a hostile `range(10**12)` is a limit error, not a hang.
fn range(args: Rest<i64>) -> Result<Value, Error> {
    let (start, stop, step) = match args.as_slice() {
        [stop] => (0, *stop, 1),
        [start, stop] => (*start, *stop, 1),
        [start, stop, step] => (*start, *stop, *step),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "range expects 1 to 3 integers",
            ))
        }
    };
    if step == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "range() step must not be zero",
        ));
    }
    let span = if step > 0 {
        stop.saturating_sub(start)
    } else {
        start.saturating_sub(stop)
    };
    let count = if span <= 0 {
        0
    } else {
        (span - 1) / step.saturating_abs() + 1
    };
    if count > MAX_RANGE {
        return Err(
            Error::new(ErrorKind::InvalidOperation, "range too large").with_source(RangeLimit)
        );
    }
    let items: Vec<i64> = (0..count).map(|i| start + i * step).collect();
    Ok(Value::from(items))
}

/// HF's `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(_state: &State, value: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let positional = |i: usize, name: &str| -> Result<Option<Value>, Error> {
        match (args.get(i), kwargs.get::<Option<Value>>(name)?) {
            (_, Some(v)) => Ok(Some(v)),
            (Some(v), None) => Ok(Some(v.clone())),
            (None, None) => Ok(None),
        }
    };
    let ensure_ascii = positional(0, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let indent = match positional(1, "indent")? {
        Some(v) if v.is_none() => None,
        Some(v) if v.is_integer() => {
            let n = v.as_i64().unwrap_or(0).clamp(0, 64) as usize;
            Some(" ".repeat(n))
        }
        Some(v) => v.as_str().map(str::to_string),
        None => None,
    };
    let mut opts = JsonOpts::new(indent);
    opts.ensure_ascii = ensure_ascii;
    if let Some(seps) = positional(2, "separators")?.filter(|v| !v.is_none()) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        if let [item, key] = parts.as_slice() {
            opts.item_sep = item.as_str().unwrap_or(",").to_string();
            opts.key_sep = key.as_str().unwrap_or(":").to_string();
        }
    }
    opts.sort_keys = positional(3, "sort_keys")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    Ok(Value::from_safe_string(pyfmt::to_json(&value, &opts)))
}

/// HF templates may wrap assistant turns in `{% generation %}...{% endgeneration %}`, a
/// transformers-only tag that only marks spans. It renders its body unchanged, so it becomes an
/// always-true `if`, keeping each tag's whitespace-control markers.
fn rewrite_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(open) = rest.find("{%") {
        out.push_str(&rest[..open]);
        let tag = &rest[open..];
        // The closing `%}` comes after the opening `{%`: in `{%}` they overlap.
        let Some(close) = tag[2..].find("%}").map(|i| i + 2) else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..close];
        let (lead, body) = split_marker(inner, true);
        let (body, trail) = split_marker(body, false);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => out.push_str(&format!("{{%{lead} {r} {trail}%}}")),
            None => out.push_str(&tag[..close + 2]),
        }
        rest = &tag[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Splits a leading (or trailing) `-`/`+` whitespace-control marker off a tag body.
fn split_marker(s: &str, leading: bool) -> (&str, &str) {
    if leading {
        match s.chars().next() {
            Some(c @ ('-' | '+')) => (&s[..c.len_utf8()], &s[c.len_utf8()..]),
            _ => ("", s),
        }
    } else {
        match s.chars().last() {
            Some('-' | '+') => (&s[..s.len() - 1], &s[s.len() - 1..]),
            _ => (s, ""),
        }
    }
}

fn map_error(err: Error) -> TokenizerError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Raised>() {
            return TokenizerError::Template {
                kind: TemplateErrorKind::Raised,
                message: r.0.clone(),
            };
        }
        if s.downcast_ref::<RangeLimit>().is_some() {
            return TokenizerError::Template {
                kind: TemplateErrorKind::LimitExceeded,
                message: s.to_string(),
            };
        }
        source = s.source();
    }
    let kind = match err.kind() {
        ErrorKind::SyntaxError | ErrorKind::UnknownBlock => TemplateErrorKind::Syntax,
        ErrorKind::OutOfFuel => TemplateErrorKind::LimitExceeded,
        // MiniJinja reports its recursion limit as an invalid operation; only its text tells it apart.
        ErrorKind::InvalidOperation if err.to_string().contains("recursion") => {
            TemplateErrorKind::LimitExceeded
        }
        _ => TemplateErrorKind::Render,
    };
    TokenizerError::Template {
        kind,
        message: err.to_string(),
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
