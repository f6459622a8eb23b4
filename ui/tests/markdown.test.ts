import { afterAll, describe, expect, it } from 'vitest';
import { blockHtml, lexBlocks, renderMarkdown } from '../src/lib/markdown';
import { safeUrl, sanitizeToFragment } from '../src/lib/sanitize';

// Rendering a code block starts loading the highlighter (a dynamic import); let it finish
// before the environment is torn down, or Vitest reports the late import as an unhandled error.
afterAll(async () => {
  await import('../src/lib/highlight');
});

function render(src: string, baseUrl: string | null = null): HTMLElement {
  const el = renderMarkdown(src, { baseUrl });
  document.body.replaceChildren(el);
  return el;
}

/** Everything that could run script or navigate somewhere unsafe. */
function dangers(root: HTMLElement): string[] {
  const found: string[] = [];
  for (const el of Array.from(root.querySelectorAll('*'))) {
    const tag = el.tagName.toLowerCase();
    if (['script', 'iframe', 'object', 'embed', 'form', 'style', 'svg', 'math', 'base', 'link', 'meta'].includes(tag)) found.push(`<${tag}>`);
    for (const attr of Array.from(el.attributes)) {
      if (attr.name.startsWith('on')) found.push(`${tag}[${attr.name}]`);
      if (['href', 'src', 'action', 'formaction', 'xlink:href', 'srcset'].includes(attr.name) && !/^(https?:|mailto:)/i.test(attr.value)) {
        found.push(`${tag}[${attr.name}=${attr.value}]`);
      }
    }
  }
  return found;
}

describe('markdown sanitization', () => {
  const PAYLOADS = [
    '<img src=x onerror=alert(1)>',
    '<script>alert(1)</script>',
    '[x](javascript:alert(1))',
    '[y](JaVaScRiPt:alert(1))',
    '[z](java\tscript:alert(1))',
    '<a href="data:text/html,<script>alert(1)</script>">d</a>',
    '<a href="vbscript:msgbox(1)">v</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<svg onload=alert(1)><circle r=1 /></svg>',
    '<details open ontoggle=alert(1)><summary>s</summary>x</details>',
    '<form action="javascript:alert(1)"><button formaction="javascript:alert(2)">b</button></form>',
    '![i](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)',
    '<img srcset="javascript:alert(1) 1x" src="https://ok.example/a.png">',
    '<a href="&#106;avascript:alert(1)">entity</a>',
    '<style>body{display:none}</style>',
    '<math><mi xlink:href="javascript:alert(1)">m</mi></math>',
    '<object data="javascript:alert(1)"></object><embed src="javascript:alert(1)">',
    '<div style="position:fixed;inset:0" id="composer-input" class="app">overlay</div>',
  ];

  for (const payload of PAYLOADS) {
    it(`neutralizes ${payload.slice(0, 50)}`, () => {
      const root = render(`Before\n\n${payload}\n\nafter *inline ${payload}*`);
      expect(dangers(root)).toEqual([]);
      expect(root.textContent).toContain('Before');
      expect(root.innerHTML).not.toMatch(/<script|onerror|javascript:|vbscript:|data:text/i);
    });
  }

  it('drops style, id and class from content', () => {
    const root = render('<div style="color:red" id="x" class="app">t</div>');
    const div = root.querySelector('div.md-block > div')!;
    expect(div.getAttribute('style')).toBeNull();
    expect(div.getAttribute('id')).toBeNull();
    expect(div.getAttribute('class')).toBeNull();
  });

  it('keeps safe links and opens them in a new tab without an opener', () => {
    const root = render('[site](https://example.com/a?b=1) and <mailto:me@example.com>');
    const links = Array.from(root.querySelectorAll('a'));
    expect(links.map((a) => a.getAttribute('href'))).toEqual(['https://example.com/a?b=1', 'mailto:me@example.com']);
    for (const a of links) {
      expect(a.getAttribute('target')).toBe('_blank');
      expect(a.getAttribute('rel')).toBe('noopener noreferrer');
    }
  });

  it('resolves relative links of a model card against its repo, and drops them elsewhere', () => {
    const base = 'https://huggingface.co/org/model/resolve/main/';
    expect(render('[l](LICENSE)', base).querySelector('a')!.getAttribute('href')).toBe(`${base}LICENSE`);
    expect(render('[l](LICENSE)').querySelector('a')!.hasAttribute('href')).toBe(false);
    expect(render('![b](img/badge.png)', base).querySelector('img')!.getAttribute('src')).toBe(`${base}img/badge.png`);
  });

  it('safeUrl allows only http(s)/mailto links and http(s) images', () => {
    expect(safeUrl('https://a.b', 'link')).toBe('https://a.b');
    expect(safeUrl('mailto:x@y', 'link')).toBe('mailto:x@y');
    expect(safeUrl('mailto:x@y', 'image')).toBeNull();
    expect(safeUrl(' javascript:alert(1)', 'link')).toBeNull();
    expect(safeUrl('\u0001javascript:alert(1)', 'link')).toBeNull();
    expect(safeUrl('data:image/png;base64,AAAA', 'image')).toBeNull();
    expect(safeUrl('//cdn.example/x.png', 'image')).toBe('https://cdn.example/x.png');
  });

  it('only lets spans with classes through from the highlighter path', async () => {
    const { highlightedFragment } = await import('../src/lib/sanitize');
    const div = document.createElement('div');
    div.append(highlightedFragment('<span class="hljs-string">"a"</span><img src=x onerror=alert(1)><b>b</b>'));
    expect(div.innerHTML).toBe('<span class="hljs-string">"a"</span>b');
  });

  it('sanitizeToFragment returns DOM, not a string', () => {
    expect(sanitizeToFragment('<p>x</p>').nodeType).toBe(11);
  });
});

describe('markdown rendering', () => {
  it('renders code blocks with a language label and a copy button', () => {
    const root = render('```python\nprint("<b>hi</b>")\n```');
    expect(root.querySelector('.code-lang')!.textContent).toBe('python');
    expect(root.querySelector('button.code-copy')!.getAttribute('aria-label')).toBe('Copy python to clipboard');
    expect(root.querySelector('pre code')!.textContent).toBe('print("<b>hi</b>")');
    expect(root.querySelector('pre b')).toBeNull();
  });

  it('renders GFM tables, lists and task lists (disabled checkboxes only)', () => {
    const root = render('| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] todo');
    expect(root.querySelectorAll('td')).toHaveLength(2);
    const boxes = Array.from(root.querySelectorAll('input'));
    expect(boxes).toHaveLength(2);
    expect(boxes.every((b) => b.type === 'checkbox' && b.disabled)).toBe(true);
  });

  it('keeps the objects of unchanged blocks while the source grows', () => {
    const a = lexBlocks('# Title\n\nfirst para\n\nsecond', [], true);
    const b = lexBlocks('# Title\n\nfirst para\n\nsecond para grows', a, true);
    expect(b[0]).toBe(a[0]);
    expect(b[1]).toBe(a[1]);
    expect(b[2]).not.toBe(a[2]);
    expect(b[2]!.open).toBe(true);
    const done = lexBlocks('# Title\n\nfirst para\n\nsecond para grows', b, false);
    expect(done[0]).toBe(a[0]);
    expect(done[2]!.open).toBe(false);
  });

  it('renders a block on its own', () => {
    expect(blockHtml(lexBlocks('**bold**')[0]!.token)).toBe('<p><strong>bold</strong></p>\n');
  });
});

describe('cardBody', () => {
  it('drops the YAML front matter of a model card, and only that', async () => {
    const { cardBody } = await import('../src/lib/markdown');
    expect(cardBody('---\nlicense: apache-2.0\ntags: [mlx]\n---\n# Tiny chat\n')).toBe('# Tiny chat\n');
    expect(cardBody('---\r\nlicense: mit\r\n---\r\nText')).toBe('Text');
    expect(cardBody('# Title\n\n---\n\nmore\n---\n')).toBe('# Title\n\n---\n\nmore\n---\n');
    expect(cardBody('')).toBe('');
  });
});
