import { createEffect, For, Match, on, onCleanup, onMount, Show, Switch, type JSX } from 'solid-js';
import { Icon } from '../../components/Icon';
import { EmptyState, ErrorNotice, Spinner } from '../../components/ui';
import { models, system } from '../../stores/models';
import { chat } from './controller';
import { MessageView } from './MessageView';

const SUGGESTIONS = [
  { title: 'Explain a concept', prompt: 'Explain how a transformer’s attention works, in simple terms.' },
  { title: 'Write some code', prompt: 'Write a Python function that checks whether a string is a palindrome, with tests.' },
  { title: 'Summarize', prompt: 'Summarize the main ideas of the Unix philosophy in five bullet points.' },
  { title: 'Brainstorm', prompt: 'Give me five name ideas for a privacy-first note-taking app.' },
];

export function MessageList(): JSX.Element {
  const c = chat();
  let scroller: HTMLDivElement | undefined;
  let atBottom = true;
  let frame = 0;

  const onScroll = () => {
    if (!scroller) return;
    atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  };
  const scrollToBottom = (force = false) => {
    if (!scroller || (!force && !atBottom) || frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      if (scroller) scroller.scrollTop = scroller.scrollHeight;
    });
  };
  onCleanup(() => cancelAnimationFrame(frame));

  // New conversation or a new message at the end: follow it. While streaming: follow if at the bottom.
  createEffect(on(() => c.activeId(), () => ((atBottom = true), scrollToBottom(true))));
  createEffect(on(() => c.shownIds().at(-1), () => scrollToBottom(c.stream() !== null)));
  createEffect(on(c.liveText, () => scrollToBottom()));
  createEffect(on(() => c.loadState(), (s) => s === 'ready' && scrollToBottom(true)));
  onMount(() => scrollToBottom(true));

  const showEarlier = () => {
    if (!scroller) return c.showEarlier();
    const before = scroller.scrollHeight - scroller.scrollTop;
    c.showEarlier();
    requestAnimationFrame(() => {
      if (scroller) scroller.scrollTop = scroller.scrollHeight - before;
    });
  };

  const modelName = () => {
    const id = c.active()?.model_id ?? c.draft().model_id ?? system()?.default_model_id;
    return models.get(id)?.name ?? null;
  };
  const waiting = () => c.streamingHere() && !c.stream()?.liveId;

  return (
    <div class="messages" ref={scroller} onScroll={onScroll} aria-live="off">
      <div class="messages-inner">
        <Switch>
          <Match when={c.loadState() === 'loading'}>
            <div class="center-fill">
              <Spinner label="Loading conversation" size={22} />
            </div>
          </Match>
          <Match when={c.loadState() === 'error'}>
            <div class="center-fill">
              <ErrorNotice error={c.loadError()!} onRetry={c.retryOpen} />
            </div>
          </Match>
          <Match when={c.shownIds().length === 0 && !c.replyError()}>
            <EmptyState
              icon="sparkle"
              title="What can I help with?"
              text={modelName() ? `Chatting with ${modelName()}, privately on this machine.` : 'Everything stays on this machine.'}
            >
              <div class="suggestions">
                <For each={SUGGESTIONS}>
                  {(s) => (
                    <button type="button" class="suggestion" onClick={() => void c.send(s.prompt)}>
                      <strong>{s.title}</strong>
                      <span>{s.prompt}</span>
                    </button>
                  )}
                </For>
              </div>
            </EmptyState>
          </Match>
          <Match when={true}>
            <Show when={c.hiddenCount() > 0}>
              <button type="button" class="btn btn-ghost show-earlier" onClick={showEarlier}>
                Show earlier messages ({c.hiddenCount()})
              </button>
            </Show>
            <For each={c.shownIds()}>{(id) => <MessageView id={id} />}</For>
            <Show when={waiting()}>
              <div class="msg msg-assistant" aria-label="Waiting for the reply">
                <div class="msg-avatar" aria-hidden="true">
                  <Icon name="sparkle" size={16} />
                </div>
                <div class="msg-body">
                  <div class="typing" role="status" aria-label="Thinking">
                    <span />
                    <span />
                    <span />
                  </div>
                </div>
              </div>
            </Show>
          </Match>
        </Switch>
        <Show when={c.replyError()}>
          {(e) => (
            <div class="reply-error">
              <ErrorNotice error={e().error} onRetry={() => e().retry()} />
            </div>
          )}
        </Show>
      </div>
    </div>
  );
}
