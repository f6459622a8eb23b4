// Links in the desktop window: anything outside the app opens in the system browser, never in
// the window (the shell also refuses such navigation; this keeps the click from doing nothing).

/** The http(s) URL an anchor points to when it leaves the app; null for in-app links. */
export function externalHref(anchor: HTMLAnchorElement, appOrigin: string): string | null {
  const raw = anchor.getAttribute('href');
  if (!raw || raw.startsWith('#')) return null;
  let url: URL;
  try {
    url = new URL(raw, appOrigin);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.origin === appOrigin) return null;
  return url.href;
}

/** Sends clicks on external links to `open` instead of the window; returns the remover. */
export function interceptExternalLinks(doc: Document, open: (url: string) => void): () => void {
  const onClick = (e: MouseEvent) => {
    if (e.defaultPrevented || e.button > 1) return;
    const target = e.target instanceof Element ? e.target.closest('a[href]') : null;
    if (!(target instanceof HTMLAnchorElement)) return;
    const href = externalHref(target, doc.location?.origin ?? 'null');
    if (href === null) {
      // javascript:, data:, file: and friends never navigate the window
      if (/^\s*(javascript|data|file|vbscript):/i.test(target.getAttribute('href') ?? '')) e.preventDefault();
      return;
    }
    e.preventDefault();
    open(href);
  };
  doc.addEventListener('click', onClick, true);
  doc.addEventListener('auxclick', onClick, true);
  return () => {
    doc.removeEventListener('click', onClick, true);
    doc.removeEventListener('auxclick', onClick, true);
  };
}
