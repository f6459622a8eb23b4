// "This server needs an API key": shown when an API call answers 401 (stores/auth.ts).
import { createSignal, Show, type JSX } from 'solid-js';
import { verifyApiKey } from '../services';
import { dismissKeyPrompt, keyPrompt, setKeyPromptError, submitKey } from '../stores/auth';
import { Icon } from './Icon';
import { Dialog } from './ui';

export function ApiKeyDialog(): JSX.Element {
  const [value, setValue] = createSignal('');
  const [busy, setBusy] = createSignal(false);
  const save = async () => {
    if (busy()) return;
    setBusy(true);
    const r = await submitKey(value(), { verify: verifyApiKey, reload: () => location.reload() });
    setBusy(false);
    if (!r.ok) setKeyPromptError(r.error);
  };
  return (
    <Dialog
      open={keyPrompt().open}
      title="This server needs an API key"
      onClose={dismissKeyPrompt}
      footer={
        <>
          <button type="button" class="btn btn-ghost" onClick={dismissKeyPrompt}>
            Not now
          </button>
          <button type="submit" form="api-key-form" class="btn btn-primary" disabled={busy() || !value().trim()}>
            {busy() ? 'Checking…' : 'Save'}
          </button>
        </>
      }
    >
      <form
        id="api-key-form"
        class="field api-key-form"
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <p class="dialog-text">
          CortexStream was started with <code>--api-key</code>. Enter that key; it is kept in this browser only.
        </p>
        <label class="field-label" for="api-key-input">
          API key
        </label>
        <input
          id="api-key-input"
          type="password"
          autocomplete="off"
          spellcheck={false}
          autofocus
          value={value()}
          aria-invalid={keyPrompt().error ? 'true' : undefined}
          aria-describedby="api-key-error"
          onInput={(e) => {
            setValue(e.currentTarget.value);
            if (keyPrompt().error) setKeyPromptError(null);
          }}
        />
        <Show when={keyPrompt().error}>
          {(err) => (
            <p id="api-key-error" class="field-hint field-error api-key-error" role="alert">
              <Icon name="alert" size={14} /> {err()}
            </p>
          )}
        </Show>
      </form>
    </Dialog>
  );
}
