// The server's --api-key, for the browser build: kept in localStorage["cortex.apiKey"], asked for
// in a dialog when an API call answers 401 / invalid_api_key, checked against the server before
// it is stored, then the page reloads so every store and the event stream start over with it.
import { createSignal } from 'solid-js';
import { AppError } from '../services/errors';

export const API_KEY_STORAGE = 'cortex.apiKey';

type KeyStorage = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

function defaultStorage(): KeyStorage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null; // storage disabled
  }
}

/** True for the server's "no key / wrong key" answer (401, code invalid_api_key). */
export function isApiKeyError(error: unknown): boolean {
  return error instanceof AppError && (error.code === 'invalid_api_key' || error.status === 401);
}

export function readStoredKey(storage: KeyStorage | null = defaultStorage()): string | null {
  try {
    const k = storage?.getItem(API_KEY_STORAGE)?.trim();
    return k ? k : null;
  } catch {
    return null;
  }
}

export function writeStoredKey(key: string | null, storage: KeyStorage | null = defaultStorage()): void {
  try {
    if (key) storage?.setItem(API_KEY_STORAGE, key);
    else storage?.removeItem(API_KEY_STORAGE);
  } catch {
    /* storage unavailable: the key lasts until the page reloads */
  }
}

export type KeyResult = { ok: true } | { ok: false; error: string };

export interface SubmitDeps {
  /** Resolves when the server accepts `key` (one guarded request), rejects with its error otherwise. */
  verify: (key: string) => Promise<unknown>;
  /** Starts the service over with the stored key (the page reloads). */
  reload: () => void;
  storage?: KeyStorage | null;
}

/** Checks a key against the server; stores it and reloads when accepted. Never throws. */
export async function submitKey(raw: string, deps: SubmitDeps): Promise<KeyResult> {
  const key = raw.trim();
  if (!key) return { ok: false, error: 'Enter the key.' };
  try {
    await deps.verify(key);
  } catch (e) {
    if (isApiKeyError(e)) return { ok: false, error: 'The server did not accept this key.' };
    return { ok: false, error: `The key could not be checked: ${AppError.from(e).message}` };
  }
  writeStoredKey(key, deps.storage === undefined ? defaultStorage() : deps.storage);
  deps.reload();
  return { ok: true };
}

// ---- the prompt --------------------------------------------------------------------------------

export interface KeyPromptState {
  open: boolean;
  /** Why it is shown again: the stored key was refused, or the last one typed was. */
  error: string | null;
}

const [keyPrompt, setKeyPrompt] = createSignal<KeyPromptState>({ open: false, error: null });
export { keyPrompt };
let dismissed = false;

/**
 * Called by the service on every 401. Opens the dialog once; after the person closed it, background
 * calls (the event stream's reconnects) do not reopen it: Settings has the field.
 */
export function requestApiKey(storage: KeyStorage | null = defaultStorage()): void {
  if (dismissed || keyPrompt().open) return;
  setKeyPrompt({ open: true, error: readStoredKey(storage) ? 'The saved key was not accepted.' : null });
}

export function setKeyPromptError(error: string | null): void {
  setKeyPrompt((s) => ({ ...s, error }));
}

export function dismissKeyPrompt(): void {
  dismissed = true;
  setKeyPrompt({ open: false, error: null });
}

/** Tests only. */
export function resetKeyPrompt(): void {
  dismissed = false;
  setKeyPrompt({ open: false, error: null });
}
