import { createMemo, createSignal, Show, type JSX } from 'solid-js';
import { Icon } from '../../components/Icon';
import { Markdown } from '../../components/Markdown';
import { IconButton } from '../../components/ui';
import { formatMs, formatTokensPerSecond } from '../../lib/format';
import { copyText } from '../../lib/markdown';
import { siblings } from '../../lib/tree';
import type { Id, MessageStats } from '../../services/types';
import { models } from '../../stores/models';
import { chat } from './controller';

export function MessageView(props: { id: Id }): JSX.Element {
  const c = chat();
  // Re-evaluated on tree changes, but downstream only updates when this message's object changes.
  const msg = createMemo(() => c.index().byId.get(props.id));
  const sib = createMemo(() => siblings(c.index(), props.id), undefined, {
    equals: (a, b) => a.position === b.position && a.count === b.count,
  });
  const live = () => c.streamingHere() && c.stream()?.liveId === props.id;
  const busy = () => c.stream() !== null;
  const [editing, setEditing] = createSignal(false);
  const [copied, setCopied] = createSignal(false);

  const copy = () => {
    const m = msg();
    if (!m) return;
    void copyText(m.content).then((ok) => {
      if (!ok) return;
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    });
  };

  const switcher = () => (
    <Show when={sib().count > 1}>
      <div class="branch" role="group" aria-label="Versions">
        <IconButton
          icon="left"
          size={14}
          label="Previous version"
          disabled={busy() || sib().position <= 1}
          onClick={() => c.flip(props.id, -1)}
        />
        <span class="branch-pos" aria-live="polite">
          {sib().position} / {sib().count}
        </span>
        <IconButton
          icon="right"
          size={14}
          label="Next version"
          disabled={busy() || sib().position >= sib().count}
          onClick={() => c.flip(props.id, 1)}
        />
      </div>
    </Show>
  );

  return (
    <Show when={msg()}>
      {(m) => (
        <Show
          when={m().role === 'user'}
          fallback={
            <article class="msg msg-assistant" data-id={props.id} aria-busy={live()}>
              <div class="msg-avatar" aria-hidden="true">
                <Icon name="sparkle" size={16} />
              </div>
              <div class="msg-body">
                <Show when={live() && c.liveText() === ''} fallback={<Markdown source={live() ? c.liveText() : m().content} live={live()} />}>
                  <div class="typing" role="status" aria-label="Thinking">
                    <span />
                    <span />
                    <span />
                  </div>
                </Show>
                <Show when={m().error && !live()}>
                  <p class="msg-error" role="alert">
                    <Icon name="alert" size={15} /> {m().error!.message}
                  </p>
                </Show>
                {/* The toolbar keeps its height while streaming, so nothing jumps when the reply ends. */}
                <div class="msg-tools" classList={{ hidden: live() }}>
                  {switcher()}
                  <IconButton icon={copied() ? 'check' : 'copy'} size={15} label={copied() ? 'Copied' : 'Copy reply'} onClick={copy} />
                  <IconButton
                    icon="refresh"
                    size={15}
                    label="Regenerate reply"
                    disabled={busy()}
                    onClick={() => c.regenerate(props.id)}
                  />
                  <Stats stats={m().stats} model={models.get(m().model_id)?.name ?? null} />
                </div>
              </div>
            </article>
          }
        >
          <article class="msg msg-user" data-id={props.id}>
            <Show
              when={editing()}
              fallback={
                <>
                  <div class="msg-bubble">{m().content}</div>
                  <div class="msg-tools">
                    {switcher()}
                    <IconButton icon={copied() ? 'check' : 'copy'} size={15} label={copied() ? 'Copied' : 'Copy message'} onClick={copy} />
                    <IconButton icon="edit" size={15} label="Edit message" disabled={busy()} onClick={() => setEditing(true)} />
                  </div>
                </>
              }
            >
              <EditBox
                initial={m().content}
                onCancel={() => setEditing(false)}
                onSave={(text) => {
                  setEditing(false);
                  c.edit(props.id, text);
                }}
              />
            </Show>
          </article>
        </Show>
      )}
    </Show>
  );
}

function EditBox(props: { initial: string; onSave: (text: string) => void; onCancel: () => void }): JSX.Element {
  let area: HTMLTextAreaElement | undefined;
  const save = () => {
    const v = area?.value.trim() ?? '';
    if (v) props.onSave(v);
  };
  return (
    <div class="edit-box">
      <textarea
        ref={(el) => {
          area = el;
          queueMicrotask(() => {
            el.focus();
            el.setSelectionRange(el.value.length, el.value.length);
            el.style.height = `${Math.min(320, el.scrollHeight + 2)}px`;
          });
        }}
        aria-label="Edit message"
        value={props.initial}
        rows={3}
        onInput={(e) => {
          const el = e.currentTarget;
          el.style.height = 'auto';
          el.style.height = `${Math.min(320, el.scrollHeight + 2)}px`;
        }}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            save();
          } else if (e.key === 'Escape') {
            e.preventDefault();
            props.onCancel();
          }
        }}
      />
      <div class="edit-actions">
        <button type="button" class="btn btn-ghost btn-small" onClick={() => props.onCancel()}>
          Cancel
        </button>
        <button type="button" class="btn btn-primary btn-small" onClick={save}>
          Save &amp; send
        </button>
      </div>
    </div>
  );
}

function Stats(props: { stats: MessageStats | null; model: string | null }): JSX.Element {
  return (
    <Show when={props.stats}>
      {(s) => (
        <span class="msg-stats">
          <Show when={s().tokens_per_s > 0}>
            <span title="Generation speed">{formatTokensPerSecond(s().tokens_per_s)}</span>
          </Show>
          <Show when={s().completion_tokens > 0}>
            <span title="Tokens generated">{s().completion_tokens} tokens</span>
          </Show>
          <Show when={s().cached_tokens > 0}>
            <span title="Prompt tokens reused from the cache">{s().cached_tokens} cached</span>
          </Show>
          <Show when={s().ttft_ms > 0}>
            <span title="Time to first token">TTFT {formatMs(s().ttft_ms)}</span>
          </Show>
          <Show when={s().finish_reason === 'length'}>
            <span class="warn">hit the token limit</span>
          </Show>
          <Show when={s().finish_reason === 'cancelled'}>
            <span>stopped</span>
          </Show>
          <Show when={props.model}>
            <span class="msg-model">{props.model}</span>
          </Show>
        </span>
      )}
    </Show>
  );
}
