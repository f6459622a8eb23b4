//! Lifecycle and progress events of long work (downloads, conversions, library changes), fanned
//! out to every front end that subscribed: the HTTP server forwards them as server-sent events,
//! the desktop shell over a Tauri channel. Chat replies do not go here: they stream on their
//! own request. A subscriber that falls behind loses the oldest events (each event carries the
//! whole current state, so the next one repairs the picture).
use crate::convert::Conversion;
use crate::downloads::Download;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AppEvent {
    Download {
        download: Download,
    },
    Conversion {
        conversion: Conversion,
    },
    /// Library rows were added, removed or changed: list them again.
    ModelsChanged,
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<AppEvent>,
    /// True once the app shuts down: subscribers end their streams (an open event stream must
    /// not keep a server from exiting).
    closed: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(256).0,
            closed: watch::channel(false).0,
        }
    }
}

impl Events {
    pub fn send(&self, event: AppEvent) {
        // no subscriber is fine: nobody is watching
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            closed: self.closed.subscribe(),
        }
    }

    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// One subscriber's events, until the app shuts down.
pub struct Subscription {
    rx: broadcast::Receiver<AppEvent>,
    closed: watch::Receiver<bool>,
}

impl Subscription {
    /// The next event; None once the app shuts down. A subscriber that fell behind skips to
    /// the oldest event still kept (each event carries the whole current state).
    pub async fn recv(&mut self) -> Option<AppEvent> {
        loop {
            if *self.closed.borrow() {
                return None;
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(ev) => return Some(ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.closed.changed() => return None,
            }
        }
    }
}
