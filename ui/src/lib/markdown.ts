// Markdown -> DOM. marked lexes the source into top-level block tokens; each block is rendered on
// its own (so a streaming reply re-renders only its last block) and turned into DOM through the
// one sanitizer. Code blocks become a component with a language label, a copy button and
// (lazily loaded) highlighting.
import { Marked, type Token, type Tokens, type TokensList } from 'marked';
import { highlightedFragment, sanitizeToFragment } from './sanitize';

// Registered once, at module level (never per message).
const md = new Marked({ gfm: true, breaks: false, async: false });
md.use({
  renderer: {
    code(token: Tokens.Code): string {
      const lang = (token.lang ?? '').trim().split(/\s+/)[0] ?? '';
      return `<pre><code data-lang="${escapeHtml(lang)}">${escapeHtml(token.text)}</code></pre>\n`;
    },
  },
});

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface Block {
  /** The block's source text: the identity a rendered block is kept by. */
  readonly raw: string;
  readonly token: Token;
  /** The last block of a reply still streaming (its code is not highlighted yet). */
  readonly open: boolean;
}

/**
 * Lexes `source` into blocks, reusing the objects of `previous` whose source and openness are
 * unchanged (so a keyed list keeps their DOM).
 */
export function lexBlocks(source: string, previous: readonly Block[] = [], live = false): Block[] {
  const tokens: TokensList = md.lexer(source);
  const blocks: Block[] = [];
  const visible = tokens.filter((t) => t.type !== 'space' && t.type !== 'def');
  visible.forEach((token, i) => {
    const open = live && i === visible.length - 1;
    const prev = previous[i];
    if (prev && prev.raw === token.raw && prev.open === open) blocks.push(prev);
    else blocks.push({ raw: token.raw, token, open });
  });
  return blocks;
}

export function blockHtml(token: Token): string {
  return md.parser([token]);
}

export interface RenderOptions {
  /** Base for relative links and images (a model card's repo on the hub). */
  baseUrl?: string | null;
}

/** Renders one block to a sanitized element (a `display: contents` wrapper). */
export function renderBlock(block: Block, options: RenderOptions = {}): HTMLElement {
  const wrapper = document.createElement('div');
  wrapper.className = 'md-block';
  wrapper.append(sanitizeToFragment(blockHtml(block.token), options.baseUrl ?? null));
  for (const pre of Array.from(wrapper.querySelectorAll('pre'))) {
    const code = pre.querySelector(':scope > code');
    if (code) enhanceCodeBlock(pre, code as HTMLElement, !block.open);
  }
  return wrapper;
}

/** A model card without its YAML front matter (the hub's metadata block between `---` lines). */
export function cardBody(card: string): string {
  const m = /^\uFEFF?---[ \t]*\r?\n[\s\S]*?\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|$)/.exec(card);
  return m ? card.slice(m[0].length) : card;
}

/** Renders a whole document (a model card) at once. */
export function renderMarkdown(source: string, options: RenderOptions = {}): HTMLElement {
  const root = document.createElement('div');
  for (const block of lexBlocks(source)) root.append(renderBlock(block, options));
  return root;
}

// ---- code blocks ------------------------------------------------------------------------------

type Highlighter = typeof import('./highlight');
let highlighter: Highlighter | null = null;
let loading: Promise<Highlighter> | null = null;

function loadHighlighter(): Promise<Highlighter> {
  loading ??= import('./highlight').then((m) => (highlighter = m));
  return loading;
}

function applyHighlight(h: Highlighter, code: HTMLElement, text: string, lang: string): void {
  const html = h.highlight(text, lang);
  if (html !== null) {
    code.replaceChildren(highlightedFragment(html));
    code.classList.add('hljs');
  }
}

function enhanceCodeBlock(pre: HTMLElement, code: HTMLElement, highlightNow: boolean): void {
  const lang = code.getAttribute('data-lang') ?? '';
  const text = code.textContent ?? '';
  const box = document.createElement('div');
  box.className = 'code-block';
  const head = document.createElement('div');
  head.className = 'code-head';
  const label = document.createElement('span');
  label.className = 'code-lang';
  label.textContent = lang || 'text';
  const copy = document.createElement('button');
  copy.type = 'button';
  copy.className = 'code-copy';
  copy.textContent = 'Copy';
  copy.setAttribute('aria-label', `Copy ${lang || 'code'} to clipboard`);
  copy.addEventListener('click', () => {
    void copyText(text).then((ok) => {
      copy.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => (copy.textContent = 'Copy'), 1500);
    });
  });
  head.append(label, copy);
  pre.replaceWith(box);
  box.append(head, pre);
  pre.tabIndex = 0; // scrollable regions are keyboard reachable
  pre.setAttribute('aria-label', `${lang || 'Code'} block`);
  if (!highlightNow || !lang) return;
  if (highlighter) applyHighlight(highlighter, code, text, lang);
  else
    void loadHighlighter().then((h) => {
      if (code.textContent === text) applyHighlight(h, code, text, lang);
    });
}

export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Fallback for non-secure contexts (http://LAN-address).
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}
