//! WebKitGTK's rendering mode on Linux machines without a GPU.
//!
//! WebKitGTK composites the page with OpenGL by default. Where the machine has no GPU render
//! node (`/dev/dri/renderD*`: VMs, servers, containers, Xvfb), that GL runs in Mesa's llvmpipe
//! on the CPU, and every repaint costs many times what it costs without compositing. The
//! blinking caret of a focused chat box alone kept the idle app at 3.2-3.8% of a core here
//! against 0.7-1.0% with compositing off (`bench/desktop.sh`; docs/ARCHITECTURE.md has the
//! figures). So on such machines the app turns compositing off, unless the user has set
//! `WEBKIT_DISABLE_COMPOSITING_MODE` themselves: `=0` keeps WebKit's default.

use std::ffi::OsStr;
use std::path::Path;

/// The variable WebKitGTK reads at start; any value but `0` turns compositing off.
pub const DISABLE_COMPOSITING: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Whether the app should turn compositing off: only where no GPU render node exists and the
/// user has not chosen either way.
pub fn should_disable_compositing(has_render_node: bool, user_value: Option<&OsStr>) -> bool {
    !has_render_node && user_value.is_none()
}

/// Whether `dri` (normally `/dev/dri`) holds a render node, i.e. a GPU that WebKit's GL can use.
pub fn has_render_node(dri: &Path) -> bool {
    std::fs::read_dir(dri).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}

/// Sets [`DISABLE_COMPOSITING`] when [`should_disable_compositing`] says so. Call before any
/// thread starts (it changes the process environment, which WebKit's processes inherit).
/// Does nothing off Linux.
pub fn apply_defaults() {
    if cfg!(target_os = "linux") {
        let user = std::env::var_os(DISABLE_COMPOSITING);
        if should_disable_compositing(has_render_node(Path::new("/dev/dri")), user.as_deref()) {
            std::env::set_var(DISABLE_COMPOSITING, "1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compositing_goes_off_only_without_a_gpu_and_without_a_user_choice() {
        assert!(should_disable_compositing(false, None));
        assert!(!should_disable_compositing(true, None));
        // the user's value wins either way, "0" included (WebKit reads it as "keep compositing")
        assert!(!should_disable_compositing(false, Some(OsStr::new("0"))));
        assert!(!should_disable_compositing(false, Some(OsStr::new("1"))));
        assert!(!should_disable_compositing(true, Some(OsStr::new("1"))));
    }

    #[test]
    fn render_nodes_are_found_by_name() {
        let dir = std::env::temp_dir().join(format!("cortex-dri-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!has_render_node(&dir), "an empty folder has no render node");
        std::fs::write(dir.join("card0"), b"").unwrap();
        assert!(
            !has_render_node(&dir),
            "a display card alone is not a render node"
        );
        std::fs::write(dir.join("renderD128"), b"").unwrap();
        assert!(has_render_node(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            !has_render_node(&dir),
            "a missing folder has no render node"
        );
    }
}
