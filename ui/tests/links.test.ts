// @vitest-environment jsdom
import { describe, expect, it, vi } from 'vitest';
import { externalHref, interceptExternalLinks } from '../src/lib/links';

const APP = 'tauri://localhost';

function anchor(href: string): HTMLAnchorElement {
  const a = document.createElement('a');
  a.setAttribute('href', href);
  return a;
}

describe('externalHref', () => {
  it('sends http(s) links outside the app to the browser', () => {
    expect(externalHref(anchor('https://huggingface.co/org/m'), APP)).toBe('https://huggingface.co/org/m');
    expect(externalHref(anchor('http://example.com'), APP)).toBe('http://example.com/');
  });
  it('keeps in-app and non-web links out', () => {
    for (const h of ['#top', '/library', 'javascript:alert(1)', 'data:text/html,x', 'file:///etc/passwd', 'mailto:a@b.c', '']) {
      expect(externalHref(anchor(h), APP), h).toBeNull();
    }
    expect(externalHref(anchor('http://localhost:3000/x'), 'http://localhost:3000')).toBeNull();
  });
});

describe('interceptExternalLinks', () => {
  it('opens external links through the callback and stops the navigation', () => {
    const open = vi.fn();
    const remove = interceptExternalLinks(document, open);
    const a = anchor('https://huggingface.co/x');
    a.setAttribute('target', '_blank');
    a.innerHTML = '<span>model card</span>';
    document.body.append(a);
    const click = new MouseEvent('click', { bubbles: true, cancelable: true });
    a.querySelector('span')!.dispatchEvent(click);
    expect(open).toHaveBeenCalledWith('https://huggingface.co/x');
    expect(click.defaultPrevented).toBe(true);

    const bad = anchor('javascript:window.__pwned=1');
    document.body.append(bad);
    const click2 = new MouseEvent('click', { bubbles: true, cancelable: true });
    bad.dispatchEvent(click2);
    expect(click2.defaultPrevented).toBe(true);
    expect(open).toHaveBeenCalledTimes(1);

    remove();
    const click3 = new MouseEvent('click', { bubbles: true, cancelable: true });
    a.dispatchEvent(click3);
    expect(open).toHaveBeenCalledTimes(1);
    a.remove();
    bad.remove();
  });
});
