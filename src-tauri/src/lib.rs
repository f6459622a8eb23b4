//! CortexStream's desktop app: the web UI (ui/, embedded at build time) in a Tauri 2 window,
//! over the same service layer as `cortex serve`. This crate only adapts: [`commands`] map
//! the UI's operations onto [`cortex_service::App`], app events are re-emitted to the window
//! as `app_event`, [`links`] keeps the window on the app's own pages and [`api_server`] runs
//! the optional local OpenAI-compatible server; [`rendering`] picks WebKitGTK's mode on Linux
//! machines without a GPU. Data flows one way: window -> command -> App.
pub mod api_server;
pub mod commands;
pub mod error;
pub mod links;
pub mod rendering;

include!("command_names.rs");

use cortex_service::{App, AppConfig, ServiceError};
use std::time::Duration;
use tauri::{Emitter, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

/// What the commands reach through `State`: the service layer and the local API server.
pub struct Desktop {
    pub app: App,
    pub api: api_server::ApiServer,
}

impl Desktop {
    /// Opens the catalog and starts the background work (default model import, unfinished
    /// downloads), then restores the local API server if the user left it on.
    pub async fn open(config: AppConfig) -> Result<Desktop, ServiceError> {
        let app = App::open(config).await?;
        let api = api_server::ApiServer::default();
        if let Err(e) = api.restore(&app).await {
            tracing::warn!("local API server settings: {e}");
        }
        Ok(Desktop { app, api })
    }

    /// Stops the API server, replies, downloads (kept to resume at the next start),
    /// conversions and engines; gives up waiting after a few seconds so closing never hangs.
    pub async fn shutdown(&self) {
        let all = async {
            self.api.shutdown().await;
            self.app.shutdown().await;
        };
        if tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .is_err()
        {
            tracing::warn!("shutdown took over 5 s; exiting anyway");
        }
    }
}

/// The app's commands: exactly these are registered, and capabilities/main.json grants
/// exactly these to the main window (build.rs lists them for the permission manifest).
pub fn handler<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
    use commands::*;
    tauri::generate_handler![
        get_system,
        get_settings,
        update_settings,
        list_models,
        get_model,
        update_model,
        delete_model,
        load_model,
        unload_model,
        import_model,
        search_hub,
        get_hub_model,
        start_download,
        list_downloads,
        pause_download,
        resume_download,
        retry_download,
        cancel_download,
        forget_download,
        estimate_conversion,
        start_conversion,
        list_conversions,
        cancel_conversion,
        list_conversations,
        create_conversation,
        get_conversation,
        update_conversation,
        delete_conversation,
        send_message,
        regenerate,
        stop_reply,
        open_link,
        api_server::get_api_server,
        api_server::set_api_server,
    ]
}

/// Re-emits the app's events (downloads, conversions, library changes) to the windows until
/// the app shuts down.
pub fn forward_events<R: Runtime>(handle: tauri::AppHandle<R>, app: &App) {
    let mut events = app.subscribe();
    tauri::async_runtime::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Err(e) = handle.emit("app_event", &event) {
                tracing::debug!("app_event not delivered: {e}");
            }
        }
    });
}

/// The main window: the app's own pages only (see [`links`]).
pub fn main_window<R: Runtime, M: Manager<R>>(
    manager: &M,
) -> tauri::Result<tauri::WebviewWindow<R>> {
    let handle = manager.app_handle().clone();
    let for_new_windows = handle.clone();
    WebviewWindowBuilder::new(manager, "main", WebviewUrl::App("index.html".into()))
        .title("CortexStream")
        .inner_size(1280.0, 800.0)
        .min_inner_size(420.0, 560.0)
        .on_navigation(move |url| links::on_navigation(&handle, url))
        .on_new_window(move |url, _features| {
            // target=_blank links: the browser, never a second app window
            links::on_navigation(&for_new_windows, &url);
            tauri::webview::NewWindowResponse::Deny
        })
        .build()
}

fn has_display() -> bool {
    if cfg!(target_os = "linux") {
        ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
    } else {
        true
    }
}

/// The default model's GGUF the packages carry, so the first start needs no download:
/// `Contents/Resources/models` in the macOS .app, `/usr/lib/CortexStream/models` from the .deb
/// (both relative to the binary). None when running from a build folder.
fn bundled_default_model() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin_dir = exe.parent()?;
    let file = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    [
        bin_dir.join("../Resources").join(file),
        bin_dir.join("../lib/CortexStream").join(file),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Runs the desktop app until its window closes.
pub fn run() {
    // first, on one thread: OpenBLAS (MLX's float matmuls on Linux) reads its kernel choice and
    // how its threads wait when it loads, so the app re-executes itself once with them set
    cortex_mlx::reexec_with_blas_env();
    // before any thread starts: the service layer reads CORTEX_DEFAULT_GGUF, WebKit its mode
    rendering::apply_defaults();
    if std::env::var_os("CORTEX_DEFAULT_GGUF").is_none() {
        if let Some(gguf) = bundled_default_model() {
            std::env::set_var("CORTEX_DEFAULT_GGUF", gguf);
        }
    }
    init_tracing();
    if !has_display() {
        eprintln!(
            "CortexStream needs a display for its window (no DISPLAY or WAYLAND_DISPLAY here).\n\
             Run the same app in a browser instead: cortex serve default  (then open the URL it prints)"
        );
        std::process::exit(2);
    }
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            // a second start brings the running window forward instead of opening another
            if let Some(w) = app.get_webview_window("main") {
                let _ = w.unminimize();
                let _ = w.show();
                let _ = w.set_focus();
            }
        }))
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .plugin(tauri_plugin_opener::init())
        .invoke_handler(handler())
        .on_window_event(|window, event| {
            if matches!(
                event,
                tauri::WindowEvent::Resized(_) | tauri::WindowEvent::Moved(_)
            ) {
                save_window_state_soon(window.app_handle());
            }
        })
        .setup(|app| {
            let desktop = tauri::async_runtime::block_on(Desktop::open(AppConfig::from_env()))?;
            forward_events(app.handle().clone(), &desktop.app);
            app.manage(desktop);
            main_window(app)?;
            Ok(())
        })
        .build(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("CortexStream could not start: {e}");
            std::process::exit(1);
        });
    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            if let Some(desktop) = handle.try_state::<Desktop>() {
                tauri::async_runtime::block_on(desktop.shutdown());
            }
        }
    });
}

/// Saves the window's size and place shortly after it stops changing. The window-state plugin
/// saves only on a clean exit; a killed or crashed app would forget the user's layout.
fn save_window_state_soon<R: Runtime>(handle: &tauri::AppHandle<R>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tauri_plugin_window_state::{AppHandleExt, StateFlags};
    static LATEST: AtomicU64 = AtomicU64::new(0);
    let mine = LATEST.fetch_add(1, Ordering::Relaxed) + 1;
    let handle = handle.clone();
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if LATEST.load(Ordering::Relaxed) == mine {
            if let Err(e) = handle.save_window_state(StateFlags::all()) {
                tracing::debug!("window state not saved: {e}");
            }
        }
    });
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
