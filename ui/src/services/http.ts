// The AppService over HTTP (`cortex serve` at /api) with server-sent events.
import { AppError } from './errors';
import { readJsonEvents } from './sse';
import type {
  AppEvent,
  AppService,
  ConnectionState,
  EventHandlers,
  HubSearchQuery,
  Id,
  ReplyEvent,
  StreamOptions,
} from './types';

export interface HttpServiceOptions {
  /** Origin + prefix of the API; defaults to the page's own origin. */
  baseUrl?: string;
  /** The server's --api-key, sent as a Bearer token when set. */
  apiKey?: string | null;
  fetch?: typeof fetch;
  /** Called on every 401 answer (no key or a wrong one), before the call rejects with it. */
  onUnauthorized?: (error: AppError) => void;
}

const enc = encodeURIComponent;

export function createHttpService(options: HttpServiceOptions = {}): AppService {
  const base = (options.baseUrl ?? '').replace(/\/$/, '');
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));

  function headers(extra?: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { Accept: 'application/json', ...extra };
    if (options.apiKey) h.Authorization = `Bearer ${options.apiKey}`;
    return h;
  }

  async function send(method: string, path: string, body?: unknown, signal?: AbortSignal, accept?: string): Promise<Response> {
    let response: Response;
    try {
      response = await doFetch(`${base}${path}`, {
        method,
        headers: headers({
          ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
          ...(accept ? { Accept: accept } : {}),
        }),
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw new AppError('cancelled', 'Stopped.');
      throw new AppError('network', 'Cannot reach CortexStream. Is `cortex serve` running?', {
        cause: e instanceof Error ? e.message : String(e),
      });
    }
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401 || error.code === 'invalid_api_key') options.onUnauthorized?.(error);
      throw error;
    }
    return response;
  }

  async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await send(method, path, body);
    const text = await response.text();
    return (text ? JSON.parse(text) : {}) as T;
  }

  async function stream(path: string, body: unknown, opts: StreamOptions): Promise<void> {
    const response = await send('POST', path, body, opts.signal, 'text/event-stream');
    if (!response.body) throw new AppError('internal', 'The reply stream is empty.');
    try {
      await readJsonEvents<ReplyEvent>(response.body, opts.onEvent);
    } catch (e) {
      if (opts.signal?.aborted) throw new AppError('cancelled', 'Stopped.');
      throw e instanceof SyntaxError
        ? new AppError('internal', 'The server sent an unreadable reply event.')
        : new AppError('network', 'The connection closed during the reply.');
    }
  }

  function subscribe(handlers: EventHandlers): () => void {
    // fetch-streamed SSE (not EventSource) so that the Bearer header applies; reconnects with backoff.
    let stopped = false;
    let controller: AbortController | null = null;
    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const setState = (s: ConnectionState) => handlers.onState?.(s);

    const connect = async () => {
      if (stopped) return;
      controller = new AbortController();
      setState(attempt === 0 ? 'connecting' : 'reconnecting');
      try {
        const response = await send('GET', '/api/events', undefined, controller.signal, 'text/event-stream');
        if (!response.body) throw new Error('no body');
        attempt = 0;
        setState('open');
        await readJsonEvents<AppEvent>(response.body, (event) => {
          try {
            handlers.onEvent(event);
          } catch (e) {
            console.error('event handler failed', e);
          }
        });
      } catch {
        /* reconnect below */
      }
      if (stopped) return;
      attempt++;
      setState('reconnecting');
      const delay = Math.min(10_000, 500 * 2 ** Math.min(attempt, 5));
      timer = setTimeout(connect, delay);
    };
    void connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      controller?.abort();
    };
  }

  const searchParams = (q: HubSearchQuery) => {
    const p = new URLSearchParams({ q: q.q });
    if (q.mlx_only !== undefined) p.set('mlx_only', String(q.mlx_only));
    if (q.sort) p.set('sort', q.sort);
    if (q.limit) p.set('limit', String(q.limit));
    if (q.min_params != null) p.set('min_params', String(q.min_params));
    if (q.max_params != null) p.set('max_params', String(q.max_params));
    return p.toString();
  };

  const download = (id: Id, action: string) => json<import('./types').Download>('POST', `/api/downloads/${enc(id)}/${action}`);

  return {
    getSystem: () => json('GET', '/api/system'),
    getSettings: () => json('GET', '/api/settings'),
    updateSettings: (update) => json('PUT', '/api/settings', update),

    listModels: () => json('GET', '/api/models'),
    getModel: (id) => json('GET', `/api/models/${enc(id)}`),
    updateModel: (id, update) => json('PATCH', `/api/models/${enc(id)}`, update),
    deleteModel: (id) => json('DELETE', `/api/models/${enc(id)}`),
    loadModel: (id) => json('POST', `/api/models/${enc(id)}/load`),
    unloadModel: (id) => json('POST', `/api/models/${enc(id)}/unload`),
    importModel: (request) => json('POST', '/api/models/import', request),

    searchHub: (query) => json('GET', `/api/hub/search?${searchParams(query)}`),
    getHubModel: ({ id, revision, context }) => {
      const p = new URLSearchParams({ id });
      if (revision) p.set('revision', revision);
      if (context) p.set('context', String(context));
      return json('GET', `/api/hub/model?${p.toString()}`);
    },

    startDownload: (request) => json('POST', '/api/downloads', request),
    listDownloads: () => json('GET', '/api/downloads'),
    pauseDownload: (id) => download(id, 'pause'),
    resumeDownload: (id) => download(id, 'resume'),
    cancelDownload: (id) => download(id, 'cancel'),
    retryDownload: (id) => download(id, 'retry'),
    forgetDownload: async (id) => {
      await json('DELETE', `/api/downloads/${enc(id)}`);
    },

    estimateConversion: (options) => json('POST', '/api/convert/estimate', options),
    startConversion: (request) => json('POST', '/api/convert', request),
    listConversions: () => json('GET', '/api/conversions'),
    cancelConversion: async (id) => {
      await json('POST', `/api/conversions/${enc(id)}/cancel`);
    },

    listConversations: (q) => json('GET', `/api/conversations${q ? `?q=${enc(q)}` : ''}`),
    createConversation: (request) => json('POST', '/api/conversations', request),
    getConversation: (id) => json('GET', `/api/conversations/${enc(id)}`),
    updateConversation: (id, update) => json('PATCH', `/api/conversations/${enc(id)}`, update),
    deleteConversation: async (id) => {
      await json('DELETE', `/api/conversations/${enc(id)}`);
    },
    sendMessage: (id, request, opts) => stream(`/api/conversations/${enc(id)}/messages`, request, opts),
    regenerate: (id, request, opts) => stream(`/api/conversations/${enc(id)}/regenerate`, request, opts),
    stopReply: async (id) => {
      await json('POST', `/api/conversations/${enc(id)}/stop`);
    },

    subscribe,
  };
}

async function errorFrom(response: Response): Promise<AppError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  const parsed = body !== null ? AppError.from(body, response.status) : null;
  if (parsed && parsed.code !== 'internal') return parsed;
  if (parsed && body && typeof body === 'object' && 'error' in body) return parsed;
  const byStatus: Record<number, [string, string]> = {
    401: ['unauthorized', 'Not authorized.'],
    403: ['forbidden', 'Refused by the server.'],
    404: ['not_found', 'Not found.'],
    409: ['conflict', 'That conflicts with something that already exists.'],
    429: ['rate_limited', 'Too many requests; try again in a moment.'],
  };
  const [code, message] = byStatus[response.status] ?? ['internal', `The server answered ${response.status}.`];
  return new AppError(code, message, null, response.status);
}
