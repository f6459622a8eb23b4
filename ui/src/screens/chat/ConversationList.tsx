import { createSignal, For, Match, Show, Switch, type JSX } from 'solid-js';
import { Icon } from '../../components/Icon';
import { ConfirmDialog, IconButton } from '../../components/ui';
import { formatRelative } from '../../lib/format';
import { chatHref, navigate } from '../../lib/router';
import type { Conversation } from '../../services/types';
import { chat } from './controller';

export function ConversationList(props: { onClose: () => void }): JSX.Element {
  const c = chat();
  const [renaming, setRenaming] = createSignal<string | null>(null);
  const [deleting, setDeleting] = createSignal<Conversation | null>(null);
  let timer: ReturnType<typeof setTimeout> | undefined;

  return (
    <aside class="conv-list" aria-label="Conversations">
      <div class="conv-head">
        <button
          type="button"
          class="btn btn-primary btn-block"
          onClick={() => {
            navigate(chatHref(null));
            props.onClose();
            queueMicrotask(() => document.getElementById('composer-input')?.focus());
          }}
        >
          <Icon name="plus" size={16} /> New chat
        </button>
        <IconButton icon="close" class="conv-close" label="Hide conversations" onClick={props.onClose} />
      </div>
      <label class="search-field">
        <Icon name="search" size={16} />
        <input
          type="search"
          placeholder="Search chats"
          aria-label="Search conversations"
          value={c.query()}
          onInput={(e) => {
            const v = e.currentTarget.value;
            clearTimeout(timer);
            timer = setTimeout(() => c.setQuery(v), 200);
          }}
        />
      </label>
      <div class="conv-scroll">
        <Switch>
          <Match when={c.listState() === 'loading' && c.conversations().length === 0}>
            <ul class="conv-items" aria-hidden="true">
              <For each={[1, 2, 3, 4]}>{() => <li class="skeleton-row" />}</For>
            </ul>
          </Match>
          <Match when={c.listState() === 'error' && c.conversations().length === 0}>
            <p class="muted small pad">
              Could not load conversations.{' '}
              <button type="button" class="link-btn" onClick={() => void c.loadList()}>
                Retry
              </button>
            </p>
          </Match>
          <Match when={c.conversations().length === 0}>
            <p class="muted small pad">{c.query() ? `No chats match “${c.query()}”.` : 'Your chats will appear here.'}</p>
          </Match>
          <Match when={true}>
            <ul class="conv-items">
              <For each={c.conversations()}>
                {(conv) => (
                  <li class="conv-item" classList={{ active: conv.id === c.activeId() }}>
                    <Show
                      when={renaming() === conv.id}
                      fallback={
                        <>
                          <a
                            class="conv-link"
                            href={chatHref(conv.id)}
                            aria-current={conv.id === c.activeId() ? 'page' : undefined}
                            onClick={props.onClose}
                          >
                            <span class="conv-title">{conv.title || 'Untitled'}</span>
                            <span class="conv-time">{formatRelative(conv.updated_at)}</span>
                          </a>
                          <div class="conv-actions">
                            <IconButton icon="edit" size={15} label={`Rename “${conv.title}”`} onClick={() => setRenaming(conv.id)} />
                            <IconButton icon="trash" size={15} label={`Delete “${conv.title}”`} onClick={() => setDeleting(conv)} />
                          </div>
                        </>
                      }
                    >
                      <input
                        class="conv-rename"
                        aria-label="New title"
                        value={conv.title}
                        ref={(el) => queueMicrotask(() => (el.focus(), el.select()))}
                        onKeyDown={(e) => {
                          if (e.key === 'Enter') {
                            e.preventDefault();
                            void c.rename(conv.id, e.currentTarget.value);
                            setRenaming(null);
                          } else if (e.key === 'Escape') {
                            e.preventDefault();
                            setRenaming(null);
                          }
                        }}
                        onBlur={(e) => {
                          if (renaming() === conv.id) {
                            if (e.currentTarget.value.trim() && e.currentTarget.value !== conv.title) {
                              void c.rename(conv.id, e.currentTarget.value);
                            }
                            setRenaming(null);
                          }
                        }}
                      />
                    </Show>
                  </li>
                )}
              </For>
            </ul>
          </Match>
        </Switch>
      </div>
      <ConfirmDialog
        open={deleting() !== null}
        title="Delete this chat?"
        message={
          <>
            “{deleting()?.title}” and all its messages will be deleted. This cannot be undone.
          </>
        }
        confirmLabel="Delete"
        danger
        onClose={() => setDeleting(null)}
        onConfirm={() => {
          const d = deleting();
          setDeleting(null);
          if (d) void c.remove(d.id);
        }}
      />
    </aside>
  );
}
