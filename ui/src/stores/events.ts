// The one subscription to the back end's events, feeding the stores (STYLE.md 17).
import { createSignal } from 'solid-js';
import { api } from '../services';
import type { ConnectionState } from '../services/types';
import { isActive } from '../lib/downloads';
import { downloads, refreshConversions, refreshDownloads, upsertConversion, upsertDownload } from './downloads';
import { refreshModels, refreshSystem, system } from './models';

const [connection, setConnection] = createSignal<ConnectionState>('connecting');
export { connection };

let started = false;

/**
 * Progress events are rate-limited by the server and a stalled transfer sends none, so the last
 * counts before a stall may never arrive as an event: while a download is active and the stream has
 * been quiet for a while, read the list instead.
 */
const QUIET_MS = 2_500;
let lastDownloadEvent = 0;

export function startEvents(): void {
  if (started) return;
  started = true;
  let wasOpen = false;
  let modelsTimer: ReturnType<typeof setTimeout> | undefined;
  api().subscribe({
    onEvent(event) {
      switch (event.type) {
        case 'download':
          lastDownloadEvent = Date.now();
          upsertDownload(event.download);
          if (event.download.state === 'completed') scheduleModels();
          break;
        case 'conversion':
          upsertConversion(event.conversion);
          if (event.conversion.state === 'completed') scheduleModels();
          break;
        case 'models_changed':
          scheduleModels();
          break;
      }
    },
    onState(state) {
      setConnection(state);
      // Once listening, fetch what the stream may have missed: after a reconnect, and at the
      // first open too (the desktop app imports the default model while the window loads, and
      // an event sent before the listener was attached is gone).
      if (state === 'open' && wasOpen) {
        void refreshDownloads().catch(() => {});
        void refreshConversions().catch(() => {});
      }
      if (state === 'open') scheduleModels();
      if (state === 'open') wasOpen = true;
    },
  });

  setInterval(() => {
    if (Date.now() - lastDownloadEvent < QUIET_MS || !downloads.all().some(isActive)) return;
    lastDownloadEvent = Date.now();
    void refreshDownloads().catch(() => {});
  }, QUIET_MS);

  function scheduleModels() {
    clearTimeout(modelsTimer);
    modelsTimer = setTimeout(() => {
      void refreshModels();
      // the default model's id arrives with the system info once it has been imported
      if (!system()?.default_model_id) void refreshSystem().catch(() => {});
    }, 150);
  }
}
