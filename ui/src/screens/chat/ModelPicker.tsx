import { For, Show, type JSX } from 'solid-js';
import { models, system } from '../../stores/models';
import { chat } from './controller';

/** The conversation's model (a new chat's draft model before the first message). */
export function ModelPicker(): JSX.Element {
  const c = chat();
  const current = () => (c.active() ? c.active()!.model_id : c.draft().model_id) ?? system()?.default_model_id ?? '';
  return (
    <label class="model-picker">
      <span class="visually-hidden">Model</span>
      <select
        aria-label="Model"
        value={current()}
        disabled={c.stream() !== null}
        onChange={(e) => void c.update({ model_id: e.currentTarget.value || null }).catch(() => {})}
      >
        <Show when={!models.get(current())}>
          <option value={current()} selected>
            {current() ? 'Default model' : 'No model'}
          </option>
        </Show>
        <For each={models.all()}>
          {(m) => (
            <option value={m.id} selected={m.id === current()}>
              {m.loaded ? `${m.name} (loaded)` : m.name}
            </option>
          )}
        </For>
      </select>
    </label>
  );
}
