import { createEffect, Show, type JSX } from 'solid-js';
import { Icon } from '../../components/Icon';
import { models, system } from '../../stores/models';
import { chat } from './controller';

export function Composer(): JSX.Element {
  const c = chat();
  let area: HTMLTextAreaElement | undefined;

  const resize = () => {
    if (!area) return;
    area.style.height = 'auto';
    area.style.height = `${Math.min(220, area.scrollHeight)}px`;
  };
  createEffect(() => {
    c.composerText();
    queueMicrotask(resize);
  });
  // Back to the box after switching conversations.
  createEffect(() => {
    c.activeId();
    queueMicrotask(() => area && window.innerWidth > 720 && area.focus());
  });

  const submit = async () => {
    const text = c.composerText();
    if (!text.trim() || c.stream()) return;
    c.setComposerText('');
    const ok = await c.send(text);
    if (!ok && !c.composerText()) c.setComposerText(text);
  };

  const noModels = () => models.loaded() && models.ids().length === 0 && !system()?.default_model_id;

  return (
    <div class="composer-wrap">
      <Show when={noModels()}>
        <p class="composer-note">
          No model is installed yet. <a href="#/discover">Find one in Discover</a>.
        </p>
      </Show>
      <form
        class="composer"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <textarea
          id="composer-input"
          ref={area}
          rows={1}
          placeholder="Message CortexStream"
          aria-label="Message"
          aria-describedby="composer-hint"
          value={c.composerText()}
          onInput={(e) => {
            c.setComposerText(e.currentTarget.value);
            resize();
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              void submit();
            }
          }}
        />
        <Show
          when={c.streamingHere()}
          fallback={
            <button type="submit" class="send-btn" aria-label="Send message" disabled={!c.composerText().trim() || c.stream() !== null}>
              <Icon name="send" size={18} />
            </button>
          }
        >
          <button type="button" class="send-btn stop" aria-label="Stop reply" onClick={() => c.stop()}>
            <Icon name="stop" size={16} />
          </button>
        </Show>
      </form>
      <p id="composer-hint" class="composer-hint">
        <kbd>Enter</kbd> to send · <kbd>Shift</kbd>+<kbd>Enter</kbd> for a new line · <kbd>Esc</kbd> to stop
      </p>
    </div>
  );
}
