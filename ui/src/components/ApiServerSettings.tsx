// Settings > Local API server (desktop only): the same OpenAI-compatible server as `cortex
// serve`, run inside the app over its models. Loopback by default; the network needs a key.
import { createSignal, onMount, Show, type JSX } from 'solid-js';
import { desktop } from '../services';
import { AppError } from '../services/errors';
import type { ApiServerStatus, ApiServerUpdate, DesktopService } from '../services/types';
import { toast } from '../stores/toasts';
import { Icon } from './Icon';
import { ErrorNotice, Spinner } from './ui';

export function parsePort(text: string): number | null {
  const t = text.trim();
  if (!/^\d{1,5}$/.test(t)) return null;
  const n = Number(t);
  return n >= 1 && n <= 65535 ? n : null;
}

async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

export default function ApiServerSettings(): JSX.Element {
  const service = desktop() as DesktopService;
  const [status, setStatus] = createSignal<ApiServerStatus | null>(null);
  const [loadError, setLoadError] = createSignal<AppError | null>(null);
  const [busy, setBusy] = createSignal(false);
  const [problem, setProblem] = createSignal<string | null>(null);
  const [port, setPort] = createSignal('');
  const [showKey, setShowKey] = createSignal(false);

  const load = () => {
    setLoadError(null);
    service
      .getApiServer()
      .then((s) => {
        setStatus(s);
        setPort(String(s.port));
      })
      .catch((e) => setLoadError(AppError.from(e)));
  };
  onMount(load);

  const apply = async (update: ApiServerUpdate) => {
    setBusy(true);
    setProblem(null);
    try {
      const s = await service.setApiServer(update);
      setStatus(s);
      setPort(String(s.port));
    } catch (e) {
      setProblem(AppError.from(e).message);
    } finally {
      setBusy(false);
    }
  };

  const copy = async (text: string, what: string) => {
    toast((await copyText(text)) ? `${what} copied.` : `Could not copy; select the text instead.`, 'success', undefined, 2000);
  };

  return (
    <Show
      when={status()}
      fallback={
        <Show when={loadError()} fallback={<Spinner label="Loading the API server settings" />}>
          <ErrorNotice error={loadError()!} onRetry={load} />
        </Show>
      }
    >
      {(s) => (
        <div class="field-stack">
          <label class="switch-row">
            <input
              type="checkbox"
              role="switch"
              checked={s().enabled}
              disabled={busy()}
              aria-describedby="api-server-hint"
              onChange={(e) => void apply({ enabled: e.currentTarget.checked })}
            />
            <span>Serve the OpenAI-compatible API</span>
          </label>
          <span id="api-server-hint" class="field-hint">
            Other apps on this computer can use your local models through the OpenAI API (<code>/v1/chat/completions</code>), as with <code>cortex serve</code>.
          </span>

          <form
            class="field"
            onSubmit={(e) => {
              e.preventDefault();
              const p = parsePort(port());
              if (p === null) setProblem('Enter a port from 1 to 65535.');
              else void apply({ port: p });
            }}
          >
            <label class="field-label" for="api-port">
              Port
            </label>
            <div class="input-row">
              <input id="api-port" type="text" inputmode="numeric" value={port()} onInput={(e) => setPort(e.currentTarget.value)} />
              <button type="submit" class="btn" disabled={busy() || port() === String(s().port)}>
                Save
              </button>
            </div>
          </form>

          <label class="switch-row">
            <input
              type="checkbox"
              checked={s().allow_lan}
              disabled={busy()}
              onChange={(e) => void apply({ allow_lan: e.currentTarget.checked })}
            />
            <span>Allow other devices on my network (needs the API key below)</span>
          </label>

          <Show when={problem()}>
            <p class="field-hint field-error" role="alert">
              {problem()}
            </p>
          </Show>

          <Show when={s().running && s().url}>
            {(url) => (
              <div class="field">
                <span class="field-label">Address</span>
                <div class="input-row">
                  <input type="text" readonly value={url()} aria-label="Server address" />
                  <button type="button" class="btn" onClick={() => void copy(url(), 'Address')}>
                    <Icon name="copy" size={15} /> Copy
                  </button>
                </div>
              </div>
            )}
          </Show>
          <Show when={s().api_key}>
            {(key) => (
              <div class="field">
                <span class="field-label">API key (send as "Authorization: Bearer …")</span>
                <div class="input-row">
                  <input type={showKey() ? 'text' : 'password'} readonly value={key()} aria-label="API key" />
                  <button type="button" class="btn btn-ghost" onClick={() => setShowKey(!showKey())}>
                    {showKey() ? 'Hide' : 'Show'}
                  </button>
                  <button type="button" class="btn" onClick={() => void copy(key(), 'API key')}>
                    <Icon name="copy" size={15} /> Copy
                  </button>
                </div>
              </div>
            )}
          </Show>
          <Show when={!s().running}>
            <p class="muted">{s().enabled ? 'Starting…' : 'Off.'}</p>
          </Show>
        </div>
      )}
    </Show>
  );
}
