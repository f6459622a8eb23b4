//! Where the window may go: only the app's own pages. A link to anywhere else opens in the
//! system browser (the opener plugin), never inside the window, so no remote page ever runs
//! with access to the app's commands.
use tauri::{Runtime, Url};
use tauri_plugin_opener::OpenerExt;

/// The app's own origin: `tauri://localhost` (macOS, Linux) or `http(s)://tauri.localhost`
/// (Windows), plus `about:blank` that webviews load first.
pub fn is_app_url(url: &Url) -> bool {
    match url.scheme() {
        "tauri" => url.host_str() == Some("localhost"),
        "http" | "https" => url.host_str() == Some("tauri.localhost"),
        "about" => url.path() == "blank",
        _ => false,
    }
}

/// An http(s) URL outside the app, worth handing to the system browser.
pub fn external(url: &str) -> Option<Url> {
    let url = Url::parse(url).ok()?;
    (matches!(url.scheme(), "http" | "https") && !is_app_url(&url) && url.host_str().is_some())
        .then_some(url)
}

pub fn open<R: Runtime>(app: &tauri::AppHandle<R>, url: Url) {
    if let Err(e) = app.opener().open_url(url.as_str(), None::<&str>) {
        tracing::warn!("could not open {url} in the browser: {e}");
    }
}

/// The window's navigation policy: app pages load; http(s) links go to the browser; anything
/// else (file:, data:, javascript:, custom schemes) is refused.
pub fn on_navigation<R: Runtime>(app: &tauri::AppHandle<R>, url: &Url) -> bool {
    if is_app_url(url) {
        return true;
    }
    if let Some(url) = external(url.as_str()) {
        open(app, url);
    } else {
        tracing::warn!("refused navigation to {url}");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_app_origin_stays_in_the_window() {
        for ok in [
            "tauri://localhost/index.html",
            "http://tauri.localhost/",
            "about:blank",
        ] {
            assert!(is_app_url(&Url::parse(ok).unwrap()), "{ok}");
        }
        for no in [
            "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
            "tauri://evil.example/",
            "http://localhost:8080/",
            "file:///etc/passwd",
            "data:text/html,<script>alert(1)</script>",
            "javascript:alert(1)",
        ] {
            assert!(!is_app_url(&Url::parse(no).unwrap()), "{no}");
        }
    }

    #[test]
    fn only_http_links_go_to_the_browser() {
        assert!(external("https://huggingface.co/x").is_some());
        assert!(external("http://example.com/").is_some());
        for no in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "mailto:a@b.c",
            "tauri://localhost/",
            "http://tauri.localhost/x",
            "not a url",
            "smb://server/share",
        ] {
            assert!(external(no).is_none(), "{no}");
        }
    }
}
