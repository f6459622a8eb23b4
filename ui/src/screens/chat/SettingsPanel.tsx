import { createEffect, createSignal, For, on, Show, type JSX } from 'solid-js';
import { IconButton } from '../../components/ui';
import type { ModelSettings } from '../../services/types';
import { models, system } from '../../stores/models';
import { chat } from './controller';

type NumKey = 'temperature' | 'top_p' | 'top_k' | 'max_tokens' | 'context_length';

const FIELDS: { key: NumKey; label: string; min: number; max: number; step: number; hint: string }[] = [
  { key: 'temperature', label: 'Temperature', min: 0, max: 2, step: 0.05, hint: '0 = always the most likely token' },
  { key: 'top_p', label: 'Top P', min: 0, max: 1, step: 0.01, hint: 'Nucleus sampling' },
  { key: 'top_k', label: 'Top K', min: 0, max: 1000, step: 1, hint: '0 = off' },
  { key: 'max_tokens', label: 'Max tokens', min: 1, max: 131072, step: 1, hint: 'Longest reply' },
  { key: 'context_length', label: 'Context length', min: 256, max: 1048576, step: 256, hint: 'Tokens the model sees' },
];

/** System prompt and sampling for this conversation; empty = the model's defaults. Saved as you go. */
export function SettingsPanel(props: { onClose: () => void }): JSX.Element {
  const c = chat();
  const [saved, setSaved] = createSignal<'idle' | 'saving' | 'saved' | 'error'>('idle');
  const settings = (): Partial<ModelSettings> => (c.active() ? c.active()!.settings : c.draft().settings);
  const systemPrompt = () => (c.active() ? c.active()!.system_prompt : c.draft().system_prompt) ?? '';
  const model = () => models.get((c.active() ? c.active()!.model_id : c.draft().model_id) ?? system()?.default_model_id);
  const placeholder = (key: NumKey) => {
    const v = model()?.settings[key];
    return v == null ? 'Default' : `Default: ${v}`;
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  createEffect(on(() => c.activeId(), () => setSaved('idle')));

  const save = (patch: Parameters<typeof c.update>[0]) => {
    setSaved('saving');
    c.update(patch).then(
      () => setSaved('saved'),
      () => setSaved('error'),
    );
  };

  return (
    <aside class="side-panel" aria-label="Chat settings">
      <header class="side-head">
        <h2>Chat settings</h2>
        <span class="save-state" role="status">
          {saved() === 'saving' ? 'Saving…' : saved() === 'saved' ? 'Saved' : saved() === 'error' ? 'Not saved' : ''}
        </span>
        <IconButton icon="close" label="Close chat settings" onClick={props.onClose} />
      </header>
      <div class="side-body">
        <label class="field">
          <span class="field-label">System prompt</span>
          <textarea
            rows={5}
            value={systemPrompt()}
            placeholder={model()?.settings.system_prompt ?? 'Optional, e.g. “Answer briefly and cite sources.”'}
            onInput={(e) => {
              const v = e.currentTarget.value;
              clearTimeout(timer);
              timer = setTimeout(() => save({ system_prompt: v.trim() ? v : null }), 500);
            }}
          />
        </label>
        <div class="field-grid">
          <For each={FIELDS}>
            {(f) => (
              <label class="field">
                <span class="field-label">{f.label}</span>
                <input
                  type="number"
                  inputmode="decimal"
                  min={f.min}
                  max={f.max}
                  step={f.step}
                  value={settings()[f.key] ?? ''}
                  placeholder={placeholder(f.key)}
                  onChange={(e) => {
                    const raw = e.currentTarget.value.trim();
                    const n = raw === '' ? null : Number(raw);
                    if (n !== null && (!Number.isFinite(n) || n < f.min || n > f.max)) {
                      e.currentTarget.setCustomValidity(`Between ${f.min} and ${f.max}`);
                      e.currentTarget.reportValidity();
                      return;
                    }
                    e.currentTarget.setCustomValidity('');
                    save({ settings: { [f.key]: n } });
                  }}
                />
                <span class="field-hint">{f.hint}</span>
              </label>
            )}
          </For>
        </div>
        <Show when={Object.values(settings()).some((v) => v != null) || systemPrompt()}>
          <button
            type="button"
            class="btn btn-ghost btn-small"
            onClick={() =>
              save({
                system_prompt: null,
                settings: { temperature: null, top_p: null, top_k: null, max_tokens: null, context_length: null },
              })
            }
          >
            Reset to model defaults
          </button>
        </Show>
      </div>
    </aside>
  );
}
