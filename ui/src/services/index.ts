// Platform choice, in one place. Each implementation is loaded with a dynamic import(), so the
// Tauri code never loads in a browser (and the HTTP code never loads in the desktop shell).
import type { AppService, DesktopService } from './types';
import { readStoredKey, requestApiKey } from '../stores/auth';

export const isTauri = typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;

/** What the platform can do; screens ask this map instead of checking for Tauri themselves. */
export const platform = {
  name: isTauri ? ('desktop' as const) : ('web' as const),
  /** A native file/folder picker (the browser can only take a typed path). */
  pickPaths: isTauri,
  /** Opening links in the system browser vs. a new tab. */
  externalLinks: isTauri ? ('system' as const) : ('tab' as const),
};

let current: AppService | null = null;
let desktopService: DesktopService | null = null;

export async function initService(): Promise<AppService> {
  if (current) return current;
  if (isTauri) {
    const { createTauriService } = await import('./tauri');
    const { service, desktop } = await createTauriService();
    current = service;
    desktopService = desktop;
    const { interceptExternalLinks } = await import('../lib/links');
    interceptExternalLinks(document, (url) => void desktop.openLink(url).catch((e) => console.error('open link', e)));
  } else {
    const { createHttpService } = await import('./http');
    // The key of `cortex serve --api-key`; a 401 asks for it (components/ApiKeyDialog.tsx).
    current = createHttpService({ apiKey: readStoredKey(), onUnauthorized: () => requestApiKey() });
  }
  return current;
}

/** Checks a candidate API key with one guarded request (browser build only). */
export async function verifyApiKey(key: string): Promise<void> {
  const { createHttpService } = await import('./http');
  await createHttpService({ apiKey: key }).getSystem();
}

/** The service, once initService() has resolved (main.tsx waits for it before rendering). */
export function api(): AppService {
  if (!current) throw new Error('service not initialised');
  return current;
}

/** The desktop shell's extras; null in a browser. */
export function desktop(): DesktopService | null {
  return desktopService;
}

/** Tests and stories inject their own implementation. */
export function setService(service: AppService): void {
  current = service;
}

export { AppError } from './errors';
export type * from './types';
