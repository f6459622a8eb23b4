// The one place where HTML becomes DOM. Everything rendered from model output, model cards or the
// highlighter goes through here; nothing else in the UI assigns innerHTML.
import createDOMPurify, { type Config } from 'dompurify';

const purify = createDOMPurify(window);

const ALLOWED_TAGS = [
  'a', 'abbr', 'b', 'blockquote', 'br', 'caption', 'code', 'dd', 'del', 'details', 'div', 'dl', 'dt',
  'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'img', 'input', 'ins', 'kbd', 'li', 'mark', 'ol',
  'p', 'pre', 's', 'small', 'span', 'strong', 'sub', 'summary', 'sup', 'table', 'tbody', 'td', 'tfoot',
  'th', 'thead', 'tr', 'u', 'ul',
];
const ALLOWED_ATTR = [
  'href', 'src', 'alt', 'title', 'width', 'height', 'align', 'colspan', 'rowspan', 'start', 'open',
  'type', 'checked', 'disabled', 'data-lang',
];

const MARKDOWN_CONFIG: Config = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOW_UNKNOWN_PROTOCOLS: false,
  KEEP_CONTENT: true,
};

const HIGHLIGHT_CONFIG: Config = { ALLOWED_TAGS: ['span'], ALLOWED_ATTR: ['class'], KEEP_CONTENT: true };

const SAFE_LINK = /^(https?:|mailto:)/i;
const SAFE_IMAGE = /^https?:/i;
const HAS_SCHEME = /^[a-z][a-z0-9+.-]*:/i;

/** Where relative links and images of the document being sanitized point (a model card's repo). */
let currentBase: string | null = null;

/**
 * Decides what a URL in untrusted content becomes: kept (http/https/mailto), resolved against
 * the base (relative), or dropped (javascript:, data:, vbscript:, anything else).
 */
export function safeUrl(raw: string, kind: 'link' | 'image', base: string | null = null): string | null {
  // Browsers ignore whitespace and control characters inside a scheme ("java\tscript:").
  const url = raw.replace(/[\u0000-\u0020\u007f-\u009f]/g, '');
  if (!url) return null;
  if (HAS_SCHEME.test(url)) return (kind === 'link' ? SAFE_LINK : SAFE_IMAGE).test(url) ? url : null;
  if (url.startsWith('//')) return `https:${url}`;
  if (kind === 'link' && url.startsWith('#')) return null; // in-page anchors do not exist here
  if (!base) return null;
  try {
    const resolved = new URL(url, base).href;
    return (kind === 'link' ? SAFE_LINK : SAFE_IMAGE).test(resolved) ? resolved : null;
  } catch {
    return null;
  }
}

purify.addHook('afterSanitizeAttributes', (node) => {
  const el = node as Element;
  switch (el.nodeName) {
    case 'A': {
      const href = el.getAttribute('href');
      const safe = href === null ? null : safeUrl(href, 'link', currentBase);
      if (safe) {
        el.setAttribute('href', safe);
        el.setAttribute('target', '_blank');
        el.setAttribute('rel', 'noopener noreferrer');
      } else {
        el.removeAttribute('href');
      }
      break;
    }
    case 'IMG': {
      const src = el.getAttribute('src');
      const safe = src === null ? null : safeUrl(src, 'image', currentBase);
      if (safe) {
        el.setAttribute('src', safe);
        el.setAttribute('loading', 'lazy');
        el.setAttribute('referrerpolicy', 'no-referrer');
      } else {
        el.removeAttribute('src');
      }
      break;
    }
    case 'INPUT':
      // Only GFM task-list checkboxes, never editable.
      if (el.getAttribute('type') !== 'checkbox') el.remove();
      else el.setAttribute('disabled', '');
      break;
  }
});

/** Where DOMPurify cannot work, nothing is parsed as HTML: the source is shown as text. */
function textOnly(html: string): DocumentFragment {
  const fragment = document.createDocumentFragment();
  fragment.append(document.createTextNode(html.replace(/<[^>]*>/g, '')));
  return fragment;
}

/** Sanitizes untrusted HTML (rendered Markdown) into a fragment owned by this document. */
export function sanitizeToFragment(html: string, base: string | null = null): DocumentFragment {
  if (!purify.isSupported) return textOnly(html);
  currentBase = base;
  try {
    return purify.sanitize(html, { ...MARKDOWN_CONFIG, RETURN_DOM_FRAGMENT: true });
  } finally {
    currentBase = null;
  }
}

/** The highlighter's output: only spans with classes survive. */
export function highlightedFragment(html: string): DocumentFragment {
  if (!purify.isSupported) return textOnly(html);
  return purify.sanitize(html, { ...HIGHLIGHT_CONFIG, RETURN_DOM_FRAGMENT: true });
}
