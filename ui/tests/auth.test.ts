import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createHttpService } from '../src/services/http';
import { AppError } from '../src/services/errors';
import {
  API_KEY_STORAGE,
  dismissKeyPrompt,
  isApiKeyError,
  keyPrompt,
  readStoredKey,
  requestApiKey,
  resetKeyPrompt,
  submitKey,
  writeStoredKey,
} from '../src/stores/auth';

// The body `cortex serve --api-key` answers with (crates/server/src/http/guard.rs, OpenAI-shaped).
const unauthorized = (message = 'invalid API key') =>
  new Response(JSON.stringify({ error: { message, type: 'authentication_error', code: 'invalid_api_key' } }), {
    status: 401,
    headers: { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Bearer' },
  });

beforeEach(() => {
  localStorage.clear();
  resetKeyPrompt();
});

describe('API key: service', () => {
  it('reads the 401 body as invalid_api_key and reports it to onUnauthorized', async () => {
    const seen: AppError[] = [];
    const svc = createHttpService({ fetch: async () => unauthorized(), onUnauthorized: (e) => seen.push(e) });
    const err = await svc.listModels().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('invalid_api_key');
    expect((err as AppError).status).toBe(401);
    expect(isApiKeyError(err)).toBe(true);
    expect(seen).toHaveLength(1);
  });

  it('reports a bare 401 too, and nothing for other errors', async () => {
    const onUnauthorized = vi.fn();
    let status = 401;
    const svc = createHttpService({ fetch: async () => new Response('no', { status }), onUnauthorized });
    await expect(svc.getSystem()).rejects.toMatchObject({ status: 401 });
    status = 500;
    await expect(svc.getSystem()).rejects.toMatchObject({ status: 500 });
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });

  it('isApiKeyError is false for other errors', () => {
    expect(isApiKeyError(new AppError('not_found', 'x', null, 404))).toBe(false);
    expect(isApiKeyError(new Error('x'))).toBe(false);
  });
});

describe('API key: storage', () => {
  it('stores, reads (trimmed) and clears localStorage["cortex.apiKey"]', () => {
    expect(readStoredKey()).toBeNull();
    writeStoredKey('sekret');
    expect(localStorage.getItem(API_KEY_STORAGE)).toBe('sekret');
    localStorage.setItem(API_KEY_STORAGE, '  padded ');
    expect(readStoredKey()).toBe('padded');
    writeStoredKey(null);
    expect(localStorage.getItem(API_KEY_STORAGE)).toBeNull();
    localStorage.setItem(API_KEY_STORAGE, '   ');
    expect(readStoredKey()).toBeNull();
  });

  it('survives storage that throws', () => {
    const broken = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('denied');
      },
      removeItem: () => {
        throw new Error('denied');
      },
    };
    expect(readStoredKey(broken)).toBeNull();
    expect(() => writeStoredKey('k', broken)).not.toThrow();
  });
});

describe('API key: submitKey', () => {
  it('an accepted key is stored, then the service reloads', async () => {
    const verify = vi.fn(async () => {});
    const reload = vi.fn();
    expect(await submitKey('  right ', { verify, reload })).toEqual({ ok: true });
    expect(verify).toHaveBeenCalledWith('right');
    expect(localStorage.getItem(API_KEY_STORAGE)).toBe('right');
    expect(reload).toHaveBeenCalledTimes(1);
  });

  it('a refused key is not stored and says so', async () => {
    localStorage.setItem(API_KEY_STORAGE, 'old');
    const reload = vi.fn();
    const verify = () => Promise.reject(new AppError('invalid_api_key', 'invalid API key', null, 401));
    const r = await submitKey('wrong', { verify, reload });
    expect(r).toEqual({ ok: false, error: 'The server did not accept this key.' });
    expect(localStorage.getItem(API_KEY_STORAGE)).toBe('old');
    expect(reload).not.toHaveBeenCalled();
  });

  it('an unreachable server is a different message; an empty key is not sent', async () => {
    const reload = vi.fn();
    const verify = vi.fn(() => Promise.reject(new AppError('network', 'Cannot reach CortexStream.')));
    const r = await submitKey('k', { verify, reload });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/could not be checked: Cannot reach/);
    expect(await submitKey('   ', { verify, reload })).toEqual({ ok: false, error: 'Enter the key.' });
    expect(verify).toHaveBeenCalledTimes(1);
    expect(reload).not.toHaveBeenCalled();
  });

  it('verifies against the real service shape: Bearer header with the candidate key', async () => {
    const seen: string[] = [];
    const fetchFn = async (_url: RequestInfo | URL, init?: RequestInit) => {
      const auth = (init?.headers as Record<string, string>).Authorization ?? '';
      seen.push(auth);
      return auth === 'Bearer right' ? new Response('{}', { status: 200 }) : unauthorized();
    };
    const verify = (key: string) => createHttpService({ apiKey: key, fetch: fetchFn }).getSystem();
    const reload = vi.fn();
    expect((await submitKey('wrong', { verify, reload })).ok).toBe(false);
    expect((await submitKey('right', { verify, reload })).ok).toBe(true);
    expect(seen).toEqual(['Bearer wrong', 'Bearer right']);
    expect(readStoredKey()).toBe('right');
  });
});

describe('API key: prompt', () => {
  it('opens once on a 401, says when the saved key was refused, and stays closed once dismissed', () => {
    requestApiKey();
    expect(keyPrompt()).toEqual({ open: true, error: null });
    dismissKeyPrompt();
    expect(keyPrompt().open).toBe(false);
    requestApiKey(); // a background reconnect after "Not now"
    expect(keyPrompt().open).toBe(false);

    resetKeyPrompt();
    localStorage.setItem(API_KEY_STORAGE, 'stale');
    requestApiKey();
    expect(keyPrompt()).toEqual({ open: true, error: 'The saved key was not accepted.' });
  });
});
