// Chat state and actions. One module-level instance, so a reply keeps streaming while the user
// looks at another screen. While a reply streams, only `liveText` changes per token: the tree
// (and so every finished message) is touched only when a message starts or ends.
import { batch, createMemo, createRoot, createSignal } from 'solid-js';
import { api } from '../../services';
import { AppError, isCancelled } from '../../services/errors';
import type {
  Conversation,
  ConversationUpdate,
  ErrorBody,
  Id,
  Message,
  ModelSettings,
  ReplyEvent,
  StreamOptions,
} from '../../services/types';
import { titleFrom } from '../../lib/format';
import { chatHref, navigate } from '../../lib/router';
import {
  emptyIndex,
  mergeMessages,
  removeMessage,
  resolveLeaf,
  switchBranch as branchLeaf,
  upsertMessage,
  visiblePath,
  type TreeIndex,
} from '../../lib/tree';
import { system } from '../../stores/models';
import { toast } from '../../stores/toasts';

export const PAGE = 40;

export interface StreamState {
  conversationId: Id;
  controller: AbortController;
  /** The assistant message being written, once the server has created it. */
  liveId: Id | null;
  stopping: boolean;
}

export interface ReplyError {
  error: ErrorBody;
  retry: () => void;
}

export interface Draft {
  model_id: Id | null;
  system_prompt: string | null;
  settings: Partial<ModelSettings>;
}

/** Shortest time between two updates of a streaming reply's text (20 per second at most). */
const LIVE_FLUSH_MS = 50;

const emptyDraft = (): Draft => ({ model_id: null, system_prompt: null, settings: {} });

function createChat() {
  const [conversations, setConversations] = createSignal<Conversation[]>([]);
  const [listState, setListState] = createSignal<'loading' | 'ready' | 'error'>('loading');
  const [query, setQuery] = createSignal('');
  const [activeId, setActiveId] = createSignal<Id | null>(null);
  const [active, setActive] = createSignal<Conversation | null>(null);
  const [index, setIndex] = createSignal<TreeIndex>(emptyIndex);
  const [leafId, setLeafId] = createSignal<Id | null>(null);
  const [loadState, setLoadState] = createSignal<'idle' | 'loading' | 'ready' | 'error'>('idle');
  const [loadError, setLoadError] = createSignal<AppError | null>(null);
  const [stream, setStream] = createSignal<StreamState | null>(null);
  const [liveText, setLiveText] = createSignal('');
  const [replyError, setReplyError] = createSignal<ReplyError | null>(null);
  const [windowSize, setWindowSize] = createSignal(PAGE);
  const [draft, setDraft] = createSignal<Draft>(emptyDraft());
  const [composerText, setComposerText] = createSignal('');

  const path = createMemo(() => visiblePath(index(), leafId()).filter((m) => m.role !== 'system'));
  const shown = createMemo(() => {
    const p = path();
    return p.length > windowSize() ? p.slice(p.length - windowSize()) : p;
  });
  const shownIds = createMemo<Id[]>(
    () => shown().map((m) => m.id),
    [],
    { equals: (a, b) => a.length === b.length && a.every((id, i) => id === b[i]) },
  );
  const hiddenCount = createMemo(() => Math.max(0, path().length - shown().length));
  const streamingHere = createMemo(() => {
    const s = stream();
    return !!s && s.conversationId === (activeId() ?? '');
  });

  let listSeq = 0;
  async function loadList(q = query()): Promise<void> {
    const seq = ++listSeq;
    try {
      const { conversations: list } = await api().listConversations(q.trim() || undefined);
      if (seq !== listSeq) return;
      // Keep unchanged rows' objects, so their DOM (and an open rename field) stays.
      const old = new Map(conversations().map((c) => [c.id, c]));
      setConversations(
        list.map((c) => {
          const o = old.get(c.id);
          return o && o.updated_at === c.updated_at && o.title === c.title && o.model_id === c.model_id ? o : c;
        }),
      );
      setListState('ready');
    } catch (e) {
      if (seq !== listSeq) return;
      setListState('error');
      console.warn('conversations', e);
    }
  }

  let openSeq = 0;
  async function open(id: Id | null): Promise<void> {
    if (id === activeId() && (id === null || loadState() !== 'error')) return;
    const seq = ++openSeq;
    batch(() => {
      setActiveId(id);
      setReplyError(null);
      setWindowSize(PAGE);
      setLoadError(null);
      if (id === null) {
        setActive(null);
        setIndex(emptyIndex);
        setLeafId(null);
        setLoadState('idle');
      } else {
        setLoadState('loading');
      }
    });
    if (id === null) return;
    try {
      const { conversation, messages } = await api().getConversation(id);
      if (seq !== openSeq) return;
      batch(() => {
        setActive(conversation);
        const idx = mergeMessages(emptyIndex, messages);
        setIndex(idx);
        setLeafId(resolveLeaf(idx, conversation.current_leaf_id));
        setLoadState('ready');
      });
    } catch (e) {
      if (seq !== openSeq) return;
      setLoadError(AppError.from(e));
      setLoadState('error');
    }
  }

  function retryOpen(): void {
    const id = activeId();
    setActiveId(null);
    void open(id);
  }

  /** Re-reads the active conversation from the server, keeping unchanged messages' identity. */
  /**
   * Re-reads the conversation. `stoppedId`: a reply just stopped here; the server saves it when it
   * notices the closed stream (after its next token, which can take a while on a busy machine), so
   * until that message has its stats, keep the local copy and look again shortly.
   */
  async function sync(id: Id, stoppedId: Id | null = null, tries = 20): Promise<void> {
    if (activeId() !== id) return;
    try {
      const { conversation, messages } = await api().getConversation(id);
      if (activeId() !== id || streamingHere()) return;
      if (stoppedId && tries > 0 && messages.some((m) => m.id === stoppedId && !m.stats && !m.error)) {
        setTimeout(() => void sync(id, stoppedId, tries - 1), 500);
        return;
      }
      batch(() => {
        setActive(conversation);
        const idx = mergeMessages(index(), messages);
        setIndex(idx);
        setLeafId(resolveLeaf(idx, conversation.current_leaf_id));
      });
    } catch {
      /* keep what we have */
    }
  }

  function touchListEntry(conversation: Conversation): void {
    const rest = conversations().filter((c) => c.id !== conversation.id);
    setConversations([conversation, ...rest]);
  }

  let tmp = 0;

  async function runStream(
    conversationId: Id,
    start: (opts: StreamOptions) => Promise<void>,
    optimistic: { parent_id: Id | null; content: string } | null,
    retry: () => void,
  ): Promise<void> {
    const controller = new AbortController();
    const tempId = optimistic ? `tmp_${++tmp}` : null;
    const here = () => activeId() === conversationId;
    let lastUserId: Id | null = null;
    let gotError = false;
    batch(() => {
      setReplyError(null);
      setLiveText('');
      setStream({ conversationId, controller, liveId: null, stopping: false });
      if (optimistic && tempId) {
        const placeholder: Message = {
          id: tempId,
          parent_id: optimistic.parent_id,
          role: 'user',
          content: optimistic.content,
          created_at: Date.now(),
          model_id: null,
          stats: null,
          error: null,
        };
        setIndex(upsertMessage(index(), placeholder));
        setLeafId(tempId);
      }
    });

    // Tokens are shown at most every LIVE_FLUSH_MS (the first at once): each update re-lexes,
    // lays out and repaints the reply, which at one update per token took WebKit's web process
    // a third of a core on a 2-core machine, taken from the engine (bench/desktop.sh).
    let pending = '';
    let timer: ReturnType<typeof setTimeout> | undefined;
    let lastFlush = -Infinity;
    const flush = () => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      if (pending) {
        setLiveText(liveText() + pending);
        pending = '';
        lastFlush = performance.now();
      }
    };

    const onEvent = (event: ReplyEvent) => {
      if (event.type === 'delta') {
        pending += event.text;
        timer ??= setTimeout(flush, Math.max(0, lastFlush + LIVE_FLUSH_MS - performance.now()));
        return;
      }
      flush();
      if (!here()) return;
      batch(() => {
        switch (event.type) {
          case 'user_message': {
            let idx = index();
            if (tempId) idx = removeMessage(idx, tempId);
            setIndex(upsertMessage(idx, event.message));
            setLeafId(event.message.id);
            lastUserId = event.message.id;
            break;
          }
          case 'assistant_started':
            setIndex(upsertMessage(index(), event.message));
            setLeafId(event.message.id);
            setStream((s) => (s ? { ...s, liveId: event.message.id } : s));
            break;
          case 'done':
            setIndex(upsertMessage(index(), event.message));
            setLeafId(event.message.id);
            setStream(null);
            break;
          case 'error':
            gotError = true;
            if (event.message) {
              setIndex(upsertMessage(index(), event.message));
              setLeafId(event.message.id);
            }
            setReplyError({ error: event.error, retry: () => retryAfterError(event.message, lastUserId, retry) });
            break;
        }
      });
    };

    try {
      await start({ signal: controller.signal, onEvent });
      flush();
    } catch (e) {
      flush();
      const err = AppError.from(e);
      if (isCancelled(err)) {
        const stoppedId = stream()?.liveId ?? null;
        finishLocally();
        setTimeout(() => void sync(conversationId, stoppedId), 350);
      } else if (here() && !gotError) {
        batch(() => {
          // Nothing reached the server: take the placeholder back and keep the text for retry.
          if (tempId && index().byId.has(tempId)) {
            setIndex(removeMessage(index(), tempId));
            setLeafId(resolveLeaf(index(), optimistic?.parent_id ?? null));
          }
          setReplyError({ error: err, retry: () => retryAfterError(null, lastUserId, retry) });
        });
      }
    } finally {
      if (stream()?.controller === controller) setStream(null);
      if (here() && tempId && index().byId.has(tempId) && lastUserId) {
        setIndex(removeMessage(index(), tempId));
      }
      setLiveText('');
      void loadList();
    }

    function finishLocally() {
      const live = stream()?.liveId;
      if (!live || !here()) return;
      const msg = index().byId.get(live);
      if (msg && !msg.stats) {
        setIndex(
          upsertMessage(index(), {
            ...msg,
            content: liveText(),
            stats: msg.stats ?? {
              prompt_tokens: 0,
              completion_tokens: 0,
              cached_tokens: 0,
              ttft_ms: 0,
              tokens_per_s: 0,
              finish_reason: 'cancelled',
            },
          }),
        );
      }
    }
  }

  function retryAfterError(failed: Message | null, userId: Id | null, resend: () => void): void {
    if (failed && failed.role === 'assistant') return void regenerate(failed.id);
    if (userId) return void regenerate(userId); // the user message is saved: retry its reply
    resend();
  }

  async function ensureConversation(firstMessage: string): Promise<Id> {
    const id = activeId();
    if (id) return id;
    const d = draft();
    const created = await api().createConversation({
      model_id: d.model_id ?? system()?.default_model_id ?? null,
      title: titleFrom(firstMessage),
      ...(d.system_prompt ? { system_prompt: d.system_prompt } : {}),
    });
    let conversation = created;
    if (Object.keys(d.settings).length > 0) {
      conversation = await api().updateConversation(created.id, { settings: d.settings });
    }
    batch(() => {
      setActiveId(conversation.id);
      setActive(conversation);
      setIndex(emptyIndex);
      setLeafId(null);
      setLoadState('ready');
      setDraft(emptyDraft());
      touchListEntry(conversation);
    });
    navigate(chatHref(conversation.id), true);
    return conversation.id;
  }

  async function send(content: string): Promise<boolean> {
    const text = content.trim();
    if (!text || stream()) return false;
    let id: Id;
    try {
      id = await ensureConversation(text);
    } catch (e) {
      setReplyError({ error: AppError.from(e), retry: () => void send(text) });
      return false;
    }
    const parent = path().at(-1)?.id ?? null;
    void runStream(
      id,
      (opts) => api().sendMessage(id, { parent_id: parent, content: text }, opts),
      { parent_id: parent, content: text },
      () => void send(text),
    );
    return true;
  }

  function regenerate(messageId: Id): void {
    const id = activeId();
    if (!id || stream()) return;
    void runStream(id, (opts) => api().regenerate(id, { message_id: messageId }, opts), null, () => regenerate(messageId));
  }

  function edit(messageId: Id, content: string): void {
    const id = activeId();
    const text = content.trim();
    const msg = index().byId.get(messageId);
    if (!id || !msg || !text || stream()) return;
    const parent = msg.parent_id;
    void runStream(
      id,
      (opts) => api().sendMessage(id, { parent_id: parent, content: text }, opts),
      { parent_id: parent, content: text },
      () => edit(messageId, text),
    );
  }

  function stop(): void {
    const s = stream();
    if (!s || s.stopping) return;
    setStream({ ...s, stopping: true });
    s.controller.abort();
  }

  function flip(messageId: Id, delta: number): void {
    const id = activeId();
    if (!id || stream()) return;
    const leaf = branchLeaf(index(), messageId, delta);
    if (!leaf) return;
    setLeafId(leaf);
    api()
      .updateConversation(id, { current_leaf_id: leaf })
      .then((c) => activeId() === id && setActive(c))
      .catch((e) => toast(`Could not save the branch: ${AppError.from(e).message}`, 'error'));
  }

  async function update(patch: ConversationUpdate): Promise<void> {
    const id = activeId();
    if (!id) {
      const d = draft();
      setDraft({
        model_id: patch.model_id !== undefined ? patch.model_id : d.model_id,
        system_prompt: patch.system_prompt !== undefined ? patch.system_prompt : d.system_prompt,
        settings: { ...d.settings, ...patch.settings },
      });
      return;
    }
    const previous = active();
    if (previous) {
      setActive({
        ...previous,
        ...(patch.title !== undefined ? { title: patch.title } : {}),
        ...(patch.model_id !== undefined ? { model_id: patch.model_id } : {}),
        ...(patch.system_prompt !== undefined ? { system_prompt: patch.system_prompt } : {}),
        settings: { ...previous.settings, ...patch.settings },
      });
    }
    try {
      const c = await api().updateConversation(id, patch);
      if (activeId() === id) setActive(c);
      setConversations(conversations().map((x) => (x.id === id ? c : x)));
    } catch (e) {
      if (previous && activeId() === id) setActive(previous);
      toast(AppError.from(e).message, 'error');
      throw e;
    }
  }

  async function rename(id: Id, title: string): Promise<void> {
    const t = title.trim();
    if (!t) return;
    setConversations(conversations().map((c) => (c.id === id ? { ...c, title: t } : c)));
    try {
      const c = await api().updateConversation(id, { title: t });
      setConversations(conversations().map((x) => (x.id === id ? c : x)));
      if (activeId() === id) setActive(c);
    } catch (e) {
      toast(AppError.from(e).message, 'error');
      void loadList();
    }
  }

  async function remove(id: Id): Promise<void> {
    if (stream()?.conversationId === id) stop();
    try {
      await api().deleteConversation(id);
      setConversations(conversations().filter((c) => c.id !== id));
      if (activeId() === id) navigate(chatHref(null));
    } catch (e) {
      toast(AppError.from(e).message, 'error');
    }
  }

  /** A new chat with this model (from Library, Downloads, Convert). */
  function chatWithModel(modelId: Id): void {
    navigate(chatHref(null));
    void open(null);
    setDraft({ ...emptyDraft(), model_id: modelId });
    queueMicrotask(() => document.getElementById('composer-input')?.focus());
  }

  return {
    chatWithModel,
    conversations,
    listState,
    query,
    setQuery: (q: string) => {
      setQuery(q);
      void loadList(q);
    },
    loadList,
    activeId,
    active,
    index,
    leafId,
    loadState,
    loadError,
    retryOpen,
    path,
    shownIds,
    hiddenCount,
    showEarlier: () => setWindowSize(windowSize() + PAGE),
    stream,
    streamingHere,
    liveText,
    replyError,
    dismissError: () => setReplyError(null),
    draft,
    composerText,
    setComposerText,
    open,
    send,
    regenerate,
    edit,
    stop,
    flip,
    update,
    rename,
    remove,
  };
}

export type Chat = ReturnType<typeof createChat>;

let instance: Chat | null = null;

export function chat(): Chat {
  instance ??= createRoot(() => createChat());
  return instance;
}
