import { describe, expect, it } from 'vitest';
import { readJsonEvents, SseParser, type SseMessage } from '../src/services/sse';

function parseAll(chunks: (string | Uint8Array)[]): SseMessage[] {
  const out: SseMessage[] = [];
  const p = new SseParser((m) => out.push(m));
  for (const c of chunks) p.feed(c);
  p.end();
  return out;
}

const STREAM =
  ': comment\n' +
  'data: {"type":"delta","text":"héllo 👋"}\n\n' +
  'event: custom\r\ndata: line one\r\ndata: line two\r\n\r\n' +
  'id: 7\rdata:no-space\r\r' +
  'data\n\n' +
  'retry: 100\n' +
  'data: {"type":"done"}\n\n' +
  'data: unterminated';

const EXPECTED = [
  { event: 'message', data: '{"type":"delta","text":"héllo 👋"}', id: null },
  { event: 'custom', data: 'line one\nline two', id: null },
  { event: 'message', data: 'no-space', id: '7' },
  { event: 'message', data: '', id: '7' },
  { event: 'message', data: '{"type":"done"}', id: '7' },
];

describe('SSE parser', () => {
  it('parses a whole stream (LF, CRLF and CR line ends, comments, multi-line data)', () => {
    expect(parseAll([STREAM])).toEqual(EXPECTED);
  });

  it('gives the same events for every split of the text into two chunks', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      expect(parseAll([STREAM.slice(0, i), STREAM.slice(i)])).toEqual(EXPECTED);
    }
  });

  it('gives the same events when bytes arrive one at a time (split inside CRLF and UTF-8)', () => {
    const bytes = new TextEncoder().encode(STREAM);
    expect(parseAll([...bytes].map((b) => Uint8Array.of(b)))).toEqual(EXPECTED);
  });

  it('gives the same events for random chunkings', () => {
    const bytes = new TextEncoder().encode(STREAM);
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let round = 0; round < 50; round++) {
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < bytes.length; ) {
        const n = 1 + Math.floor(rand() * 9);
        chunks.push(bytes.slice(i, i + n));
        i += n;
      }
      expect(parseAll(chunks)).toEqual(EXPECTED);
    }
  });

  it('reads JSON events from a response body stream', async () => {
    const parts = ['data: {"type":"delta","te', 'xt":"a"}\n', '\ndata: {"type":"done"}\n\n'];
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const p of parts) c.enqueue(new TextEncoder().encode(p));
        c.close();
      },
    });
    const seen: unknown[] = [];
    await readJsonEvents(body, (v) => seen.push(v));
    expect(seen).toEqual([{ type: 'delta', text: 'a' }, { type: 'done' }]);
  });
});
