//! Value types shared by several tables (per-model settings, stored errors) and the helpers that
//! turn them into columns and back. Reading a column never panics: a value the catalog cannot
//! understand is a `CatalogError::Corrupt`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};

/// An enum stored as TEXT: serde and SQL share one spelling, and an unknown spelling read back from
/// the database is `Corrupt`, not a panic.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            #[allow(dead_code)]
            pub(crate) fn parse(text: &str) -> $crate::error::Result<$name> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::error::CatalogError::corrupt(
                        $what,
                        format!("unknown value {other:?}"),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

/// Generation settings of a model or a conversation; `None` means "use the default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSettings {
    pub system_prompt: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub max_tokens: Option<i64>,
    pub context_length: Option<i64>,
}

impl ModelSettings {
    /// Refuses values no sampler accepts (SQLite would also store NaN as NULL, silently).
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |detail: &str| Err(CatalogError::invalid("settings", detail));
        match self.temperature {
            Some(t) if !(t.is_finite() && t >= 0.0) => return bad("temperature must be >= 0"),
            _ => {}
        }
        match self.top_p {
            Some(p) if !(p.is_finite() && p > 0.0 && p <= 1.0) => {
                return bad("top_p must be in (0, 1]")
            }
            _ => {}
        }
        if self.top_k.is_some_and(|k| k < 0) {
            return bad("top_k must be >= 0");
        }
        if self.max_tokens.is_some_and(|n| n <= 0) {
            return bad("max_tokens must be > 0");
        }
        if self.context_length.is_some_and(|n| n <= 0) {
            return bad("context_length must be > 0");
        }
        Ok(())
    }
}

/// An error remembered with a download, a conversion or a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

impl ErrorInfo {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }

    /// The three columns (code, message, details JSON) an error is stored in.
    pub(crate) fn to_columns(
        error: Option<&ErrorInfo>,
    ) -> Result<(Option<String>, Option<String>, Option<String>)> {
        match error {
            None => Ok((None, None, None)),
            Some(e) => {
                let details = e.details.as_ref().map(to_json).transpose()?;
                Ok((Some(e.code.clone()), Some(e.message.clone()), details))
            }
        }
    }

    pub(crate) fn from_columns(
        code: Option<String>,
        message: Option<String>,
        details: Option<String>,
    ) -> Result<Option<ErrorInfo>> {
        let Some(code) = code else { return Ok(None) };
        let details = details
            .as_deref()
            .map(|d| from_json("error details", d))
            .transpose()?;
        Ok(Some(ErrorInfo {
            code,
            message: message.unwrap_or_default(),
            details,
        }))
    }
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| CatalogError::invalid("json", e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|e| CatalogError::corrupt(what, e))
}

/// Paths are stored as UTF-8 text; a path that is not UTF-8 cannot be stored faithfully.
pub(crate) fn path_text(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| CatalogError::invalid("path", format!("{} is not UTF-8", path.display())))
}

pub(crate) fn text_path(text: String) -> PathBuf {
    PathBuf::from(text)
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern that matches `text` anywhere.
pub(crate) fn like_contains(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_contains("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn settings_validation() {
        assert!(ModelSettings::default().validate().is_ok());
        let ok = ModelSettings {
            temperature: Some(0.0),
            top_p: Some(1.0),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            ModelSettings {
                temperature: Some(f64::NAN),
                ..Default::default()
            },
            ModelSettings {
                temperature: Some(-0.1),
                ..Default::default()
            },
            ModelSettings {
                top_p: Some(0.0),
                ..Default::default()
            },
            ModelSettings {
                top_k: Some(-1),
                ..Default::default()
            },
            ModelSettings {
                max_tokens: Some(0),
                ..Default::default()
            },
            ModelSettings {
                context_length: Some(-5),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(CatalogError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_columns_round_trip() {
        let e = ErrorInfo {
            code: "unauthorized".into(),
            message: "gated".into(),
            details: Some(serde_json::json!({"repo": "org/name"})),
        };
        let (c, m, d) = ErrorInfo::to_columns(Some(&e)).unwrap();
        assert_eq!(ErrorInfo::from_columns(c, m, d).unwrap(), Some(e));
        assert_eq!(ErrorInfo::from_columns(None, None, None).unwrap(), None);
        let bad = ErrorInfo::from_columns(Some("x".into()), None, Some("{".into()));
        assert!(matches!(bad, Err(CatalogError::Corrupt { .. })));
    }
}
