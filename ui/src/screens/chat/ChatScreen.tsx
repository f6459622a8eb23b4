import { createEffect, createSignal, on, onCleanup, onMount, Show, type JSX } from 'solid-js';
import { IconButton } from '../../components/ui';
import { route } from '../../lib/router';
import { chat } from './controller';
import { ConversationList } from './ConversationList';
import { Composer } from './Composer';
import { MessageList } from './MessageList';
import { ModelPicker } from './ModelPicker';
import { SettingsPanel } from './SettingsPanel';

const PANEL_KEY = 'cortex.chatPanel';

export function ChatScreen(): JSX.Element {
  const c = chat();
  const [listOpen, setListOpen] = createSignal(false);
  const [panelOpen, setPanelOpen] = createSignal(readPanel());

  // Only the route drives this (open() reads chat state, which must not re-trigger it).
  createEffect(
    on(route, (r) => {
      if (r.screen === 'chat') {
        void c.open(r.conversationId);
        setListOpen(false);
      }
    }),
  );
  onMount(() => void c.loadList());

  // Esc stops the reply (unless a dialog or an editor handles it first).
  const onKey = (e: KeyboardEvent) => {
    if (e.key !== 'Escape' || e.defaultPrevented || !c.streamingHere()) return;
    if (document.querySelector('dialog[open]')) return;
    e.preventDefault();
    c.stop();
  };
  document.addEventListener('keydown', onKey);
  onCleanup(() => document.removeEventListener('keydown', onKey));

  const togglePanel = () => {
    const next = !panelOpen();
    setPanelOpen(next);
    try {
      localStorage.setItem(PANEL_KEY, next ? '1' : '0');
    } catch {
      /* ignore */
    }
  };

  return (
    <div class="chat-screen" classList={{ 'panel-open': panelOpen(), 'list-open': listOpen() }}>
      <ConversationList onClose={() => setListOpen(false)} />
      <div class="list-scrim" aria-hidden="true" onClick={() => setListOpen(false)} />
      <section class="chat-main" aria-label="Conversation">
        <header class="chat-head">
          <IconButton icon="chat" class="list-toggle" label="Show conversations" onClick={() => setListOpen(true)} />
          <h1 class="chat-title" title={c.active()?.title ?? 'New chat'}>
            {c.active()?.title ?? 'New chat'}
          </h1>
          <ModelPicker />
          <IconButton icon="sliders" label="Chat settings" pressed={panelOpen()} onClick={togglePanel} />
        </header>
        <MessageList />
        <Composer />
      </section>
      <Show when={panelOpen()}>
        <SettingsPanel onClose={togglePanel} />
      </Show>
    </div>
  );
}

function readPanel(): boolean {
  try {
    return localStorage.getItem(PANEL_KEY) === '1';
  } catch {
    return false;
  }
}
