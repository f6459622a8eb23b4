//! The user's settings: models folder, Hugging Face endpoint (a mirror) and token, KV memory
//! budget, theme. Stored in the catalog's settings table, except the token: it goes to a file
//! only the user can read (`<home>/hf_token`, mode 0600), never into the database and never
//! back out through the API (front ends learn only whether one is stored).
//!
//! The endpoint and token apply at once (to searches and downloads started afterwards); the
//! models folder and KV budget apply to models loaded after the next start.
use crate::app::App;
use crate::{Result, ServiceError};
use cortex_catalog::Catalog;
use cortex_hub::download::HubConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

/// What is stored (everything optional: absent means the default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stored {
    pub models_dir: Option<PathBuf>,
    pub hf_endpoint: Option<String>,
    pub kv_memory_mb: Option<u64>,
    pub theme: Theme,
}

/// What front ends see.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    pub models_dir: PathBuf,
    pub hf_endpoint: Option<String>,
    pub kv_memory_mb: Option<u64>,
    pub theme: Theme,
    pub has_hf_token: bool,
    pub hf_token_storage: Option<&'static str>,
}

/// A change: absent fields stay; `null` clears `hf_endpoint`, `kv_memory_mb` and `hf_token`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    #[serde(default)]
    pub models_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::error::present")]
    pub hf_endpoint: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::error::present")]
    pub kv_memory_mb: Option<Option<u64>>,
    #[serde(default)]
    pub theme: Option<Theme>,
    #[serde(default, deserialize_with = "crate::error::present")]
    pub hf_token: Option<Option<String>>,
}

const KEYS: [&str; 4] = ["models_dir", "hf_endpoint", "kv_memory_mb", "theme"];

pub(crate) async fn load(catalog: &Catalog) -> Result<Stored> {
    let mut s = Stored::default();
    for key in KEYS {
        let Some(v) = catalog.get_setting(key).await? else {
            continue;
        };
        match key {
            "models_dir" => s.models_dir = v.as_str().map(PathBuf::from),
            "hf_endpoint" => s.hf_endpoint = v.as_str().map(str::to_string),
            "kv_memory_mb" => s.kv_memory_mb = v.as_u64(),
            _ => s.theme = serde_json::from_value(v).unwrap_or_default(),
        }
    }
    Ok(s)
}

/// The stored endpoint and token win over the environment's.
pub(crate) fn apply_to_hub(s: &Stored, hub: &mut HubConfig) {
    if let Some(e) = &s.hf_endpoint {
        hub.endpoint = e.trim_end_matches('/').to_string();
    }
}

pub(crate) fn token_file(home: &Path) -> PathBuf {
    home.join("hf_token")
}

pub(crate) fn read_token(home: &Path) -> Option<String> {
    let t = std::fs::read_to_string(token_file(home)).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn write_token(home: &Path, token: Option<&str>) -> Result<()> {
    let path = token_file(home);
    match token {
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ServiceError::io(&path)(e)),
            _ => Ok(()),
        },
        Some(t) => {
            let tmp = home.join(".hf_token.tmp");
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            use std::io::Write;
            let mut f = opts.open(&tmp).map_err(ServiceError::io(&tmp))?;
            f.write_all(t.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(ServiceError::io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(ServiceError::io(&path))
        }
    }
}

fn check_endpoint(e: &str) -> Result<String> {
    let e = e.trim().trim_end_matches('/');
    let ok = (e.starts_with("https://") || e.starts_with("http://"))
        && e.len() > "https://".len()
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(ServiceError::invalid(
            "hf_endpoint",
            format!("{e:?} is not an http(s) URL"),
        ));
    }
    Ok(e.to_string())
}

fn check_token(t: &str) -> Result<String> {
    let t = t.trim();
    if t.is_empty() || t.len() > 512 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::invalid(
            "hf_token",
            "a Hugging Face token is printable ASCII without spaces (hf_...)",
        ));
    }
    Ok(t.to_string())
}

pub(crate) async fn current(app: &App) -> Result<Settings> {
    let stored = load(app.catalog()).await?;
    let hub = app.hub_config();
    let has_file = read_token(&app.inner.config.home).is_some();
    Ok(Settings {
        models_dir: app.models_dir(),
        hf_endpoint: stored.hf_endpoint,
        kv_memory_mb: stored.kv_memory_mb,
        theme: stored.theme,
        has_hf_token: hub.token.is_some(),
        hf_token_storage: if has_file {
            Some("file")
        } else if hub.token.is_some() {
            Some("environment")
        } else {
            None
        },
    })
}

impl App {
    pub async fn update_settings(&self, u: SettingsUpdate) -> Result<Settings> {
        let catalog = self.catalog();
        if let Some(dir) = &u.models_dir {
            if !dir.is_absolute() {
                return Err(ServiceError::invalid(
                    "models_dir",
                    "must be an absolute path",
                ));
            }
            catalog
                .set_setting("models_dir", &Value::from(dir.to_string_lossy().as_ref()))
                .await?;
        }
        if let Some(e) = &u.hf_endpoint {
            match e.as_deref().filter(|e| !e.trim().is_empty()) {
                Some(e) => {
                    let e = check_endpoint(e)?;
                    catalog
                        .set_setting("hf_endpoint", &Value::from(e.as_str()))
                        .await?;
                    self.with_hub(|h| h.endpoint = e);
                }
                None => {
                    catalog.delete_setting("hf_endpoint").await?;
                    let env = HubConfig::from_env().endpoint;
                    self.with_hub(|h| h.endpoint = env);
                }
            }
        }
        if let Some(kv) = u.kv_memory_mb {
            match kv {
                Some(0) => return Err(ServiceError::invalid("kv_memory_mb", "must be at least 1")),
                Some(mb) => {
                    catalog
                        .set_setting("kv_memory_mb", &Value::from(mb))
                        .await?
                }
                None => {
                    catalog.delete_setting("kv_memory_mb").await?;
                }
            }
        }
        if let Some(theme) = u.theme {
            let v = serde_json::to_value(theme).unwrap_or(Value::Null);
            catalog.set_setting("theme", &v).await?;
        }
        if let Some(token) = &u.hf_token {
            let home = self.inner.config.home.clone();
            match token.as_deref().filter(|t| !t.trim().is_empty()) {
                Some(t) => {
                    let t = check_token(t)?;
                    write_token(&home, Some(&t))?;
                    self.with_hub(|h| h.token = Some(t));
                }
                None => {
                    write_token(&home, None)?;
                    let env = HubConfig::from_env().token;
                    self.with_hub(|h| h.token = env);
                }
            }
        }
        self.settings().await
    }

    fn with_hub(&self, f: impl FnOnce(&mut HubConfig)) {
        let mut hub = self.inner.hub.write().unwrap_or_else(|p| p.into_inner());
        f(&mut hub);
    }
}
