// Incremental parser for text/event-stream (the WHATWG "event stream interpretation"), fed
// chunks split at arbitrary boundaries (also inside a CRLF pair or a multi-byte character).

export interface SseMessage {
  event: string;
  data: string;
  id: string | null;
}

export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private eventType = '';
  private lastId: string | null = null;
  /** A chunk ended with "\r": a "\n" starting the next chunk belongs to the same line break. */
  private pendingCR = false;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(private readonly onMessage: (message: SseMessage) => void) {}

  /** Feeds bytes (decoded as a UTF-8 stream) or already-decoded text. */
  feed(chunk: Uint8Array | string): void {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.pendingCR) {
      this.pendingCR = false;
      if (text.startsWith('\n')) text = text.slice(1);
    }
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(this.buffer.slice(start, i));
      if (c === 13) {
        if (i + 1 < this.buffer.length) {
          if (this.buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
  }

  /** Ends the stream: a last event without its blank line is dropped, as the spec says. */
  end(): void {
    const rest = this.decoder.decode();
    if (rest) this.feed(rest);
    this.buffer = '';
    this.data = [];
    this.eventType = '';
  }

  private line(line: string): void {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return; // comment / keep-alive
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.eventType = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      default:
        break; // "retry" and unknown fields are ignored
    }
  }

  private dispatch(): void {
    if (this.data.length === 0) {
      this.eventType = '';
      return;
    }
    const message: SseMessage = { event: this.eventType || 'message', data: this.data.join('\n'), id: this.lastId };
    this.data = [];
    this.eventType = '';
    this.onMessage(message);
  }
}

/** Reads a fetch Response body as an event stream of JSON `data:` payloads. */
export async function readJsonEvents<T>(body: ReadableStream<Uint8Array>, onData: (value: T) => void): Promise<void> {
  const parser = new SseParser((m) => {
    if (!m.data) return;
    onData(JSON.parse(m.data) as T);
  });
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value) parser.feed(value);
    }
    parser.end();
  } finally {
    reader.releaseLock();
  }
}
