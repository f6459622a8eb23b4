import { createSignal, For, lazy, onMount, Show, type JSX } from 'solid-js';
import { Icon } from '../components/Icon';
import { ErrorNotice, Spinner } from '../components/ui';
import { formatBytes } from '../lib/format';
import { setTheme, theme } from '../lib/theme';
import { api, platform, verifyApiKey } from '../services';
import { readStoredKey, submitKey, writeStoredKey } from '../stores/auth';
import { AppError } from '../services/errors';
import type { Settings, SettingsUpdate, Theme } from '../services/types';
import { libraryOnly, refreshSystem, system } from '../stores/models';
import { toast } from '../stores/toasts';

const ApiServerSettings = lazy(() => import('../components/ApiServerSettings'));

export default function SettingsScreen(): JSX.Element {
  const [settings, setSettings] = createSignal<Settings | null>(null);
  const [loadError, setLoadError] = createSignal<AppError | null>(null);

  const load = () => {
    setLoadError(null);
    api()
      .getSettings()
      .then((s) => {
        setSettings(s);
        if (s.theme !== theme()) setTheme(s.theme);
      })
      .catch((e) => setLoadError(AppError.from(e)));
  };
  onMount(load);

  const save = async (update: SettingsUpdate, okText = 'Saved.'): Promise<boolean> => {
    try {
      const s = await api().updateSettings(update);
      setSettings(s);
      void refreshSystem().catch(() => {});
      toast(okText, 'success', undefined, 2500);
      return true;
    } catch (e) {
      toast(AppError.from(e).message, 'error');
      return false;
    }
  };

  const chooseTheme = (t: Theme) => {
    setTheme(t); // applied at once
    if (libraryOnly()) return; // kept in this browser: the server's settings are not ours to change
    void api()
      .updateSettings({ theme: t })
      .then(setSettings)
      .catch((e) => toast(`Theme not saved: ${AppError.from(e).message}`, 'error'));
  };

  return (
    <div class="page narrow-page">
      <header class="page-head">
        <div>
          <h1>Settings</h1>
          <p class="muted">
            <Show when={system()}>
              {(s) => (
                <>
                  CortexStream {s().version} · {s().device === 'gpu' ? 'GPU' : 'CPU'} · {formatBytes(s().memory_bytes)} memory
                </>
              )}
            </Show>
          </p>
        </div>
      </header>

      <section class="card card-pad settings-section" aria-labelledby="appearance">
        <h2 id="appearance" class="section-title">
          Appearance
        </h2>
        <fieldset class="segmented" role="radiogroup" aria-label="Theme">
          <legend class="visually-hidden">Theme</legend>
          <For each={['system', 'light', 'dark'] as Theme[]}>
            {(t) => (
              <label classList={{ selected: theme() === t }}>
                <input type="radio" name="theme" value={t} checked={theme() === t} onChange={() => chooseTheme(t)} />
                {t === 'system' ? 'System' : t === 'light' ? 'Light' : 'Dark'}
              </label>
            )}
          </For>
        </fieldset>
      </section>

      <Show when={platform.name === 'web'}>
        <section class="card card-pad settings-section" aria-labelledby="server-access">
          <h2 id="server-access" class="section-title">
            Server access
          </h2>
          <ApiKeyField />
        </section>
      </Show>

      <Show when={platform.name === 'desktop'}>
        <section class="card card-pad settings-section" aria-labelledby="local-api">
          <h2 id="local-api" class="section-title">
            Local API server
          </h2>
          <ApiServerSettings />
        </section>
      </Show>

      <Show when={libraryOnly()}>
        <div class="notice" data-tone="warn" role="status">
          <Icon name="lock" class="notice-icon" />
          <div class="notice-body">
            <strong>This server serves its library only</strong>
            <p>
              Downloads, imports, conversions and its settings are managed on the machine that runs it. You can chat with
              every model in its library.
            </p>
          </div>
        </div>
      </Show>

      <Show
        when={libraryOnly() ? null : settings()}
        fallback={
          <Show when={!libraryOnly()}>
            <Show when={loadError()} fallback={<div class="center-fill"><Spinner label="Loading settings" size={22} /></div>}>
              <ErrorNotice error={loadError()!} onRetry={load} />
            </Show>
          </Show>
        }
      >
        {(s) => (
          <>
            <section class="card card-pad settings-section" aria-labelledby="hf">
              <h2 id="hf" class="section-title">
                Hugging Face
              </h2>
              <TokenField settings={s()} save={save} />
              <TextSetting
                label="Mirror endpoint (HF_ENDPOINT)"
                hint="Leave empty for huggingface.co. A mirror must speak the Hugging Face Hub API."
                value={s().hf_endpoint ?? ''}
                placeholder="https://huggingface.co"
                onSave={(v) => save({ hf_endpoint: v.trim() ? v.trim() : null })}
              />
            </section>

            <section class="card card-pad settings-section" aria-labelledby="storage">
              <h2 id="storage" class="section-title">
                Storage and memory
              </h2>
              <TextSetting
                label="Models folder"
                hint="Where converted and imported models are kept. Models in the Hugging Face cache stay where they are."
                value={s().models_dir}
                onSave={(v) => (v.trim() ? save({ models_dir: v.trim() }) : Promise.resolve(false))}
              />
              <TextSetting
                label="KV cache memory budget (MB)"
                hint="Memory for the attention cache shared by all chats. Empty = automatic."
                value={s().kv_memory_mb == null ? '' : String(s().kv_memory_mb)}
                placeholder="Automatic"
                inputMode="numeric"
                validate={(v) => (v.trim() === '' || /^\d+$/.test(v.trim()) ? null : 'Enter a whole number of megabytes, or leave it empty.')}
                onSave={(v) => save({ kv_memory_mb: v.trim() === '' ? null : Number(v.trim()) })}
              />
            </section>
          </>
        )}
      </Show>
    </div>
  );
}

function TokenField(props: { settings: Settings; save: (u: SettingsUpdate, ok?: string) => Promise<boolean> }): JSX.Element {
  const [value, setValue] = createSignal('');
  const [busy, setBusy] = createSignal(false);
  const where = () =>
    props.settings.hf_token_storage === 'keychain'
      ? 'in the system keychain'
      : props.settings.hf_token_storage === 'file'
        ? 'in a file in the app’s data folder'
        : '';
  const submit = async () => {
    if (!value().trim()) return;
    setBusy(true);
    if (await props.save({ hf_token: value().trim() }, 'Token saved.')) setValue('');
    setBusy(false);
  };
  return (
    <form
      class="field"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <label class="field-label" for="hf-token">
        Access token
      </label>
      <p class="token-state" data-set={props.settings.has_hf_token}>
        <Icon name={props.settings.has_hf_token ? 'lock' : 'alert'} size={15} />
        {props.settings.has_hf_token ? `A token is stored ${where()}.` : 'No token stored. Gated models need one.'}
      </p>
      <div class="input-row">
        <input
          id="hf-token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          placeholder={props.settings.has_hf_token ? 'Enter a new token to replace it' : 'hf_…'}
          value={value()}
          onInput={(e) => setValue(e.currentTarget.value)}
        />
        <button type="submit" class="btn btn-primary" disabled={busy() || !value().trim()}>
          Save
        </button>
        <Show when={props.settings.has_hf_token}>
          <button type="button" class="btn btn-ghost danger-text" onClick={() => void props.save({ hf_token: null }, 'Token removed.')}>
            Remove
          </button>
        </Show>
      </div>
      <span class="field-hint">
        Write-only: the token is never shown again. Create one at huggingface.co/settings/tokens (read access is enough).
      </span>
    </form>
  );
}

function TextSetting(props: {
  label: string;
  hint: string;
  value: string;
  placeholder?: string;
  inputMode?: 'numeric' | 'text';
  validate?: (v: string) => string | null;
  onSave: (v: string) => Promise<boolean>;
}): JSX.Element {
  const [value, setValue] = createSignal(props.value);
  const [problem, setProblem] = createSignal<string | null>(null);
  const id = `set-${props.label.replace(/\W+/g, '-').toLowerCase()}`;
  const dirty = () => value() !== props.value;
  return (
    <form
      class="field"
      onSubmit={(e) => {
        e.preventDefault();
        const p = props.validate?.(value()) ?? null;
        setProblem(p);
        if (!p) void props.onSave(value());
      }}
    >
      <label class="field-label" for={id}>
        {props.label}
      </label>
      <div class="input-row">
        <input
          id={id}
          type="text"
          inputmode={props.inputMode ?? 'text'}
          spellcheck={false}
          value={value()}
          placeholder={props.placeholder}
          aria-invalid={problem() ? 'true' : undefined}
          aria-describedby={`${id}-hint`}
          onInput={(e) => setValue(e.currentTarget.value)}
        />
        <button type="submit" class="btn" disabled={!dirty()}>
          Save
        </button>
      </div>
      <span id={`${id}-hint`} class="field-hint" classList={{ 'field-error': !!problem() }}>
        {problem() ?? props.hint}
      </span>
    </form>
  );
}

/** The browser's copy of `cortex serve --api-key` (localStorage); the desktop app needs none. */
function ApiKeyField(): JSX.Element {
  const stored = readStoredKey() !== null;
  const [value, setValue] = createSignal('');
  const [busy, setBusy] = createSignal(false);
  const [problem, setProblem] = createSignal<string | null>(null);
  const reload = () => location.reload();
  const submit = async () => {
    setBusy(true);
    const r = await submitKey(value(), { verify: verifyApiKey, reload });
    setBusy(false);
    setProblem(r.ok ? null : r.error);
  };
  return (
    <form
      class="field"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <label class="field-label" for="api-key">
        API key
      </label>
      <p class="token-state" data-set={stored}>
        <Icon name={stored ? 'lock' : 'alert'} size={15} />
        {stored ? 'A key is stored in this browser.' : 'No key stored. Needed only when the server runs with --api-key.'}
      </p>
      <div class="input-row">
        <input
          id="api-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          placeholder={stored ? 'Enter a new key to replace it' : 'The key given to --api-key'}
          value={value()}
          aria-invalid={problem() ? 'true' : undefined}
          aria-describedby="api-key-hint"
          onInput={(e) => setValue(e.currentTarget.value)}
        />
        <button type="submit" class="btn btn-primary" disabled={busy() || !value().trim()}>
          Save
        </button>
        <Show when={stored}>
          <button
            type="button"
            class="btn btn-ghost danger-text"
            onClick={() => {
              writeStoredKey(null);
              reload();
            }}
          >
            Clear
          </button>
        </Show>
      </div>
      <span id="api-key-hint" class="field-hint" classList={{ 'field-error': !!problem() }} role={problem() ? 'alert' : undefined}>
        {problem() ?? 'Kept in this browser only (localStorage) and sent as a Bearer token. The page reloads after a change.'}
      </span>
    </form>
  );
}
