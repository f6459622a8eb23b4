//! Python's spelling of template values. Hugging Face renders chat templates with Jinja2 on
//! Python objects, so `{{ none }}` prints `None`, `{{ [1, 'a'] }}` prints `[1, 'a']` and `tojson`
//! is `json.dumps(..., ensure_ascii=False)`. MiniJinja spells all of these differently; this
//! module owns the Python spelling so rendered prompts match transformers byte for byte.

use minijinja::value::{Value, ValueKind};

/// `repr(float)`: the shortest round-trip digits, exponent form outside 1e-4 <= |x| < 1e16.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{f:e}"); // e.g. "1.5e-5", "-1e20": shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let plain = format!("{f}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    match f64::try_from(v.clone()) {
        Ok(f) => float_repr(f),
        Err(_) => v.to_string(),
    }
}

/// Python `str(value)`: what `{{ value }}` prints in Jinja2.
pub(crate) fn py_str(out: &mut String, v: &Value) {
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(v.as_str().unwrap_or_default()),
        _ => py_repr(out, v),
    }
}

/// Python `repr(value)`, as nested values print inside lists and dicts.
pub(crate) fn py_repr(out: &mut String, v: &Value) {
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&number(v)),
        ValueKind::String => str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &item);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = v.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &key);
                    out.push_str(": ");
                    py_repr(out, &v.get_item(&key).unwrap_or_default());
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

fn str_repr(out: &mut String, s: &str) {
    // Python picks double quotes only when the text has a single quote and no double quote.
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Options of Python's `json.dumps` that HF's `tojson` filter exposes.
pub(crate) struct JsonOpts {
    pub ensure_ascii: bool,
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl JsonOpts {
    pub fn new(indent: Option<String>) -> Self {
        // json.dumps drops the space after ',' when indenting (trailing whitespace otherwise).
        let item_sep = if indent.is_some() { "," } else { ", " };
        Self {
            ensure_ascii: false,
            indent,
            item_sep: item_sep.into(),
            key_sep: ": ".into(),
            sort_keys: false,
        }
    }
}

/// `json.dumps(value, ...)`.
pub(crate) fn to_json(v: &Value, opts: &JsonOpts) -> String {
    let mut out = String::new();
    json_value(&mut out, v, opts, 0);
    out
}

fn newline(out: &mut String, opts: &JsonOpts, depth: usize) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn json_value(out: &mut String, v: &Value, opts: &JsonOpts, depth: usize) {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let n = number(v);
            // json.dumps spells non-finite floats like JavaScript does.
            out.push_str(match n.as_str() {
                "nan" => "NaN",
                "inf" => "Infinity",
                "-inf" => "-Infinity",
                other => other,
            });
        }
        ValueKind::String => json_str(out, v.as_str().unwrap_or_default(), opts.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, depth + 1);
                json_value(out, item, opts, depth + 1);
            }
            newline(out, opts, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            if keys.is_empty() {
                out.push_str("{}");
                return;
            }
            if opts.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, depth + 1);
                // JSON object keys are strings; Python converts int/bool/None keys the same way.
                let key_text = match key.kind() {
                    ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                    _ => {
                        let mut s = String::new();
                        json_value(&mut s, key, opts, 0);
                        s
                    }
                };
                json_str(out, &key_text, opts.ensure_ascii);
                out.push_str(&opts.key_sep);
                json_value(out, &v.get_item(key).unwrap_or_default(), opts, depth + 1);
            }
            newline(out, opts, depth);
            out.push('}');
        }
        _ => json_str(out, &v.to_string(), opts.ensure_ascii),
    }
}

fn json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.1), "0.1");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(-2.5), "-2.5");
    }

    #[test]
    fn reprs_match_python() {
        let v = crate::template::json_to_value(
            &serde_json::json!({"a": [1, "x'y", null, true, 2.0], "b": "q"}),
        );
        let mut s = String::new();
        py_repr(&mut s, &v);
        assert_eq!(s, r#"{'a': [1, "x'y", None, True, 2.0], 'b': 'q'}"#);
    }

    #[test]
    fn json_matches_json_dumps() {
        let v = crate::template::json_to_value(
            &serde_json::json!({"name": "é<>&", "p": {"x": [1, 2]}, "e": [], "n": null}),
        );
        assert_eq!(
            to_json(&v, &JsonOpts::new(None)),
            r#"{"name": "é<>&", "p": {"x": [1, 2]}, "e": [], "n": null}"#
        );
        assert_eq!(
            to_json(&v, &JsonOpts::new(Some("  ".into()))),
            "{\n  \"name\": \"é<>&\",\n  \"p\": {\n    \"x\": [\n      1,\n      2\n    ]\n  },\n  \"e\": [],\n  \"n\": null\n}"
        );
        let mut ascii = JsonOpts::new(None);
        ascii.ensure_ascii = true;
        assert_eq!(
            to_json(&Value::from("é😀"), &ascii),
            r#""\u00e9\ud83d\ude00""#
        );
    }
}
