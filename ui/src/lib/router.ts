// A tiny hash router: #/chat, #/chat/<id>, #/discover, #/discover/model/<org>/<name>, #/downloads,
// #/library, #/settings. Hash routes work from a file, from `cortex serve` and inside Tauri alike.
import { createSignal } from 'solid-js';

export type Route =
  | { screen: 'chat'; conversationId: string | null }
  | { screen: 'discover'; modelId: string | null }
  | { screen: 'downloads' }
  | { screen: 'library' }
  | { screen: 'settings' };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '').replace(/^\/+/, '').split('?')[0] ?? '';
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  switch (parts[0]) {
    case 'discover':
      return { screen: 'discover', modelId: parts[1] === 'model' && parts.length >= 3 ? parts.slice(2).join('/') : null };
    case 'downloads':
      return { screen: 'downloads' };
    case 'library':
      return { screen: 'library' };
    case 'settings':
      return { screen: 'settings' };
    case 'chat':
      return { screen: 'chat', conversationId: parts[1] ?? null };
    default:
      return { screen: 'chat', conversationId: null };
  }
}

export function chatHref(id: string | null): string {
  return id ? `#/chat/${encodeURIComponent(id)}` : '#/chat';
}

const [route, setRoute] = createSignal<Route>(
  typeof location !== 'undefined' ? parseRoute(location.hash) : { screen: 'chat', conversationId: null },
);

if (typeof window !== 'undefined') {
  window.addEventListener('hashchange', () => setRoute(parseRoute(location.hash)));
}

export { route };

export function navigate(href: string, replace = false): void {
  if (replace) {
    history.replaceState(null, '', href);
    setRoute(parseRoute(href));
  } else if (location.hash !== href) {
    location.hash = href;
  }
}
