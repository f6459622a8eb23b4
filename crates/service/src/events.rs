//! Lifecycle and progress events of long work (downloads, conversions, library changes), fanned
//! out to every front end that subscribed: the HTTP server forwards them as server-sent events,
//! the desktop shell over a Tauri channel. Chat replies do not go here: they stream on their
//! own request. A subscriber that falls behind loses the oldest events (each event carries the
//! whole current state, so the next one repairs the picture).
use crate::convert::Conversion;
use crate::downloads::Download;
use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AppEvent {
    Download { download: Download },
    Conversion { conversion: Conversion },
    /// Library rows were added, removed or changed: list them again.
    ModelsChanged,
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<AppEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Events {
    pub fn send(&self, event: AppEvent) {
        // no subscriber is fine: nobody is watching
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.tx.subscribe()
    }
}
