import { describe, expect, it } from 'vitest';
import { createHttpService } from '../src/services/http';
import { AppError } from '../src/services/errors';
import type { ReplyEvent } from '../src/services/types';

function sseResponse(chunks: string[], delayMs = 0): Response {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(c) {
      for (const ch of chunks) {
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
        c.enqueue(enc.encode(ch));
      }
      c.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
}

describe('HTTP service', () => {
  it('sends JSON with the Bearer key and parses the answer', async () => {
    const calls: [string, RequestInit | undefined][] = [];
    const svc = createHttpService({
      apiKey: 'k',
      fetch: async (url, init) => {
        calls.push([String(url), init]);
        return new Response(JSON.stringify({ id: 'cnv_1', title: 'T' }), { status: 200 });
      },
    });
    const c = await svc.updateConversation('cnv 1', { title: 'T' });
    expect(c).toEqual({ id: 'cnv_1', title: 'T' });
    expect(calls[0]![0]).toBe('/api/conversations/cnv%201');
    expect(calls[0]![1]!.method).toBe('PATCH');
    expect((calls[0]![1]!.headers as Record<string, string>).Authorization).toBe('Bearer k');
    expect(calls[0]![1]!.body).toBe('{"title":"T"}');
  });

  it('turns API errors into AppError with code, message and details', async () => {
    const svc = createHttpService({
      fetch: async () =>
        new Response(JSON.stringify({ error: { code: 'unauthorized', message: 'Gated.', details: { repo: 'a/b' } } }), { status: 401 }),
    });
    const err = await svc.startDownload({ repo: 'a/b' }).catch((e) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: 'unauthorized', message: 'Gated.', details: { repo: 'a/b' }, status: 401 });
  });

  it('maps bare HTTP failures and network errors', async () => {
    const bare = createHttpService({ fetch: async () => new Response('nope', { status: 404 }) });
    expect(await bare.getModel('x').catch((e) => e.code)).toBe('not_found');
    const down = createHttpService({ fetch: async () => Promise.reject(new TypeError('Failed to fetch')) });
    expect(await down.getSystem().catch((e) => e.code)).toBe('network');
  });

  it('streams reply events split across chunks', async () => {
    const svc = createHttpService({
      fetch: async () =>
        sseResponse([
          'data: {"type":"assistant_started","message":{"id":"m1"}}\n\ndata: {"type":"del',
          'ta","text":"Hel"}\n\ndata: {"type":"delta","text":"lo"}\n',
          '\ndata: {"type":"done","message":{"id":"m1","content":"Hello"}}\n\n',
        ]),
    });
    const events: ReplyEvent[] = [];
    await svc.sendMessage('c', { parent_id: null, content: 'hi' }, { onEvent: (e) => events.push(e) });
    expect(events.map((e) => e.type)).toEqual(['assistant_started', 'delta', 'delta', 'done']);
    expect(events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text).join('')).toBe('Hello');
  });

  it('aborting stops the stream with a "cancelled" AppError', async () => {
    const svc = createHttpService({
      fetch: async (_url, init) => {
        const signal = init?.signal;
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(new TextEncoder().encode('data: {"type":"delta","text":"a"}\n\n'));
            signal?.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
          },
        });
        return new Response(body, { status: 200 });
      },
    });
    const controller = new AbortController();
    const seen: string[] = [];
    const done = svc.regenerate('c', { message_id: 'm' }, { signal: controller.signal, onEvent: (e) => seen.push(e.type) });
    await new Promise((r) => setTimeout(r, 20));
    controller.abort();
    const err = await done.catch((e) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err.code).toBe('cancelled');
    expect(seen).toEqual(['delta']);
  });
});
