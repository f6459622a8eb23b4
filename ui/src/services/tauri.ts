// The AppService over Tauri IPC, inside the desktop window (src-tauri/src/commands.rs).
// Loaded only through services/index.ts's dynamic import() when running inside Tauri, so none of
// this reaches a browser. Command names are the operation names in snake_case; arguments and
// results are the same JSON shapes as docs/APP_API.md.
import { AppError } from './errors';
import type { AppEvent, AppService, DesktopService, EventHandlers, Operation, ReplyEvent, StreamOptions } from './types';

type Invoke = <T>(command: string, args?: Record<string, unknown>) => Promise<T>;

export function commandName(operation: Operation): string {
  return operation.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export async function createTauriService(): Promise<{ service: AppService; desktop: DesktopService }> {
  const core = await import('@tauri-apps/api/core');
  const events = await import('@tauri-apps/api/event');

  const invoke: Invoke = async <T>(command: string, args?: Record<string, unknown>) => {
    try {
      return await core.invoke<T>(command, args);
    } catch (e) {
      throw AppError.from(e);
    }
  };
  const call = <T>(op: Operation, args?: Record<string, unknown>) => invoke<T>(commandName(op), args);

  async function stream(op: Operation, args: Record<string, unknown>, opts: StreamOptions): Promise<void> {
    const channel = new core.Channel<ReplyEvent>();
    channel.onmessage = (event) => opts.onEvent(event);
    const onAbort = () => void invoke('stop_reply', { conversationId: args.conversationId }).catch(() => {});
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await call(op, { ...args, onEvent: channel });
      if (opts.signal?.aborted) throw new AppError('cancelled', 'Stopped.');
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  function subscribe(handlers: EventHandlers): () => void {
    let unlisten: (() => void) | null = null;
    let stopped = false;
    handlers.onState?.('connecting');
    void events
      .listen<AppEvent>('app_event', (e) => handlers.onEvent(e.payload))
      .then((fn) => {
        if (stopped) fn();
        else {
          unlisten = fn;
          handlers.onState?.('open');
        }
      });
    return () => {
      stopped = true;
      unlisten?.();
    };
  }

  const desktop: DesktopService = {
    getApiServer: () => call('getApiServer'),
    setApiServer: (update) => call('setApiServer', { update }),
    openLink: (url) => call('openLink', { url }),
  };

  const service: AppService = {
    getSystem: () => call('getSystem'),
    getSettings: () => call('getSettings'),
    updateSettings: (update) => call('updateSettings', { update }),
    listModels: () => call('listModels'),
    getModel: (id) => call('getModel', { id }),
    updateModel: (id, update) => call('updateModel', { id, update }),
    deleteModel: (id) => call('deleteModel', { id }),
    loadModel: (id) => call('loadModel', { id }),
    unloadModel: (id) => call('unloadModel', { id }),
    importModel: (request) => call('importModel', { request }),
    searchHub: (query) => call('searchHub', { query }),
    getHubModel: (query) => call('getHubModel', { query }),
    startDownload: (request) => call('startDownload', { request }),
    listDownloads: () => call('listDownloads'),
    pauseDownload: (id) => call('pauseDownload', { id }),
    resumeDownload: (id) => call('resumeDownload', { id }),
    cancelDownload: (id) => call('cancelDownload', { id }),
    retryDownload: (id) => call('retryDownload', { id }),
    forgetDownload: (id) => call('forgetDownload', { id }),
    estimateConversion: (options) => call('estimateConversion', { options }),
    startConversion: (request) => call('startConversion', { request }),
    listConversions: () => call('listConversions'),
    cancelConversion: (id) => call('cancelConversion', { id }),
    listConversations: (q) => call('listConversations', { q: q ?? null }),
    createConversation: (request) => call('createConversation', { request }),
    getConversation: (id) => call('getConversation', { id }),
    updateConversation: (id, update) => call('updateConversation', { id, update }),
    deleteConversation: (id) => call('deleteConversation', { id }),
    sendMessage: (conversationId, request, opts) => stream('sendMessage', { conversationId, request }, opts),
    regenerate: (conversationId, request, opts) => stream('regenerate', { conversationId, request }, opts),
    stopReply: (conversationId) => call('stopReply', { conversationId }),
    subscribe,
  };
  return { service, desktop };
}
