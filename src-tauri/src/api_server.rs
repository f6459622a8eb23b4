//! The local OpenAI-compatible server, started from the app (Settings > Local API server): the
//! same server as `cortex serve` (crates/server) over the app's own [`App`], so both share
//! models, engines and the catalog. Loopback only by default; listening on the network needs
//! an API key (one is generated if the user has none). The choice is stored in the catalog
//! and restored at the next start.
use crate::error::{CommandError, CommandResult};
use cortex_server::{Server, ServerConfig};
use cortex_service::App;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::sync::{oneshot, Mutex};

const SETTING: &str = "desktop.api_server";
pub const DEFAULT_PORT: u16 = 8080;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiServerSettings {
    pub enabled: bool,
    pub port: u16,
    /// Listen on every interface (other machines can connect) instead of 127.0.0.1 only.
    pub allow_lan: bool,
    pub api_key: Option<String>,
}

impl Default for ApiServerSettings {
    fn default() -> Self {
        ApiServerSettings {
            enabled: false,
            port: DEFAULT_PORT,
            allow_lan: false,
            api_key: None,
        }
    }
}

/// A change from the Settings screen: absent fields stay; `api_key: null` removes the key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiServerUpdate {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub allow_lan: Option<bool>,
    #[serde(default, deserialize_with = "cortex_service::present")]
    pub api_key: Option<Option<String>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ApiServerStatus {
    #[serde(flatten)]
    pub settings: ApiServerSettings,
    pub running: bool,
    /// Where clients connect, e.g. `http://127.0.0.1:8080/v1`.
    pub url: Option<String>,
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    settings: ApiServerSettings,
    running: Option<Running>,
}

#[derive(Default)]
pub struct ApiServer {
    state: Mutex<State>,
}

impl ApiServer {
    /// Reads the stored choice and starts the server if it was on. A port taken since the
    /// last run leaves it off (the Settings screen says why when the user tries again).
    pub async fn restore(&self, app: &App) -> CommandResult<()> {
        let stored = match app.catalog().get_setting(SETTING).await? {
            Some(v) => serde_json::from_value(v).unwrap_or_default(),
            None => ApiServerSettings::default(),
        };
        let mut st = self.state.lock().await;
        st.settings = stored.clone();
        if stored.enabled {
            if let Err(e) = start(&mut st, app).await {
                tracing::warn!("local API server not started: {e}");
                st.settings.enabled = false;
            }
        }
        Ok(())
    }

    pub async fn status(&self) -> ApiServerStatus {
        status_of(&*self.state.lock().await)
    }

    /// Applies a change: validates it, (re)starts or stops the server, then stores it. A server
    /// that cannot start (port in use) is an error and nothing is stored.
    pub async fn update(&self, app: &App, u: ApiServerUpdate) -> CommandResult<ApiServerStatus> {
        let mut st = self.state.lock().await;
        let mut next = st.settings.clone();
        if let Some(v) = u.enabled {
            next.enabled = v;
        }
        if let Some(p) = u.port {
            if p == 0 {
                return Err(CommandError::new(
                    "invalid_input",
                    "the port must be 1-65535",
                ));
            }
            next.port = p;
        }
        if let Some(v) = u.allow_lan {
            next.allow_lan = v;
        }
        if let Some(k) = u.api_key {
            next.api_key = k.map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
        }
        if next.api_key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err(CommandError::new(
                "invalid_input",
                "an API key needs at least 16 characters",
            ));
        }
        if next.allow_lan && next.api_key.is_none() {
            next.api_key = Some(new_key()?);
        }
        let previous = std::mem::replace(&mut st.settings, next.clone());
        stop(&mut st).await;
        if next.enabled {
            if let Err(e) = start(&mut st, app).await {
                st.settings = ApiServerSettings {
                    enabled: false,
                    ..previous
                };
                return Err(e);
            }
        }
        let value = serde_json::to_value(&st.settings).unwrap_or_default();
        app.catalog().set_setting(SETTING, &value).await?;
        Ok(status_of(&st))
    }

    /// Stops the server (the app is closing). Idempotent.
    pub async fn shutdown(&self) {
        stop(&mut *self.state.lock().await).await;
    }
}

fn status_of(st: &State) -> ApiServerStatus {
    ApiServerStatus {
        settings: st.settings.clone(),
        running: st.running.is_some(),
        url: st.running.as_ref().map(|r| url_of(r.addr)),
    }
}

fn url_of(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        lan_address().unwrap_or(addr.ip())
    } else {
        addr.ip()
    };
    format!("http://{}/v1", SocketAddr::new(host, addr.port()))
}

/// This machine's address on its network (the interface a default route would use); no
/// packet is sent.
fn lan_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

async fn start(st: &mut State, app: &App) -> CommandResult<()> {
    let s = &st.settings;
    let config = ServerConfig {
        host: if s.allow_lan {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        },
        port: s.port,
        api_key: s.api_key.clone(),
        ..ServerConfig::default()
    };
    let server = Server::with_app(config, app.clone())
        .await
        .map_err(|e| match &e {
            cortex_server::ServerError::Bind { addr, source }
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                CommandError::new(
                    "conflict",
                    format!(
                        "port {} is in use by another program; choose another",
                        addr.port()
                    ),
                )
            }
            _ => CommandError::new("internal", e.to_string()),
        })?;
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        if let Err(e) = server
            .run(async {
                let _ = rx.await;
            })
            .await
        {
            tracing::warn!("local API server: {e}");
        }
    });
    tracing::info!("local API server on http://{addr}");
    st.running = Some(Running {
        addr,
        stop: tx,
        task,
    });
    Ok(())
}

/// Stops serving; streams still open after a grace period are cut.
async fn stop(st: &mut State) {
    if let Some(r) = st.running.take() {
        let _ = r.stop.send(());
        let abort = r.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(3), r.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

fn new_key() -> CommandResult<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| CommandError::new("internal", format!("no randomness for a key: {e}")))?;
    Ok(format!(
        "cs-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[tauri::command]
pub async fn get_api_server(d: tauri::State<'_, crate::Desktop>) -> CommandResult<ApiServerStatus> {
    Ok(d.api.status().await)
}

#[tauri::command]
pub async fn set_api_server(
    d: tauri::State<'_, crate::Desktop>,
    update: crate::error::Arg<ApiServerUpdate>,
) -> CommandResult<ApiServerStatus> {
    d.api.update(&d.app, update.get("update")?).await
}
