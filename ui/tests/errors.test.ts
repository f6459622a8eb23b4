import { describe, expect, it } from 'vitest';
import { describeError } from '../src/lib/errors-ui';
import { AppError } from '../src/services/errors';

describe('error code -> message and action', () => {
  it('unauthorized: accept the license on the model page, or add a token in Settings', () => {
    const v = describeError({ code: 'unauthorized', message: 'x', details: { repo: 'meta-llama/Llama-3.2-1B' } }, { retryable: true });
    expect(v.message).toMatch(/Accept the license on the model page/);
    expect(v.message).toMatch(/token in Settings/);
    expect(v.actions).toEqual([
      { kind: 'navigate', label: 'Open model page', href: '#/discover/model/meta-llama/Llama-3.2-1B' },
      { kind: 'navigate', label: 'Add a token in Settings', href: '#/settings' },
      { kind: 'retry', label: 'Retry' },
    ]);
  });

  it('unauthorized without a repo still points to Settings', () => {
    expect(describeError({ code: 'unauthorized', message: 'x' }).actions.map((a) => a.label)).toEqual(['Add a token in Settings']);
  });

  it('disk_full points to Library and Settings', () => {
    const v = describeError({ code: 'disk_full', message: 'x' });
    expect(v.title).toBe('The disk is full');
    expect(v.actions.map((a) => (a.kind === 'navigate' ? a.href : a.kind))).toEqual(['#/library', '#/settings']);
  });

  it('hub_unreachable suggests a mirror; rate_limited a token', () => {
    expect(describeError({ code: 'hub_unreachable', message: 'x' }, { retryable: true }).actions.map((a) => a.label)).toEqual([
      'Retry',
      'Set a mirror',
    ]);
    expect(describeError({ code: 'rate_limited', message: 'x' }).message).toMatch(/token/);
  });

  it('model_load_failed keeps the server’s sentence and offers a retry', () => {
    const v = describeError({ code: 'model_load_failed', message: 'config.json is missing' }, { retryable: true });
    expect(v.message).toBe('config.json is missing');
    expect(v.actions[0]).toEqual({ kind: 'retry', label: 'Retry' });
  });

  it('unknown codes fall back to the message', () => {
    expect(describeError({ code: 'weird', message: 'Odd thing.' })).toEqual({ title: 'Something went wrong', message: 'Odd thing.', actions: [] });
  });
});

describe('AppError', () => {
  it('reads API error bodies, bare bodies, exceptions and aborts', () => {
    const a = AppError.from({ error: { code: 'not_found', message: 'Gone.', details: { id: 1 } } }, 404);
    expect([a.code, a.message, a.details, a.status]).toEqual(['not_found', 'Gone.', { id: 1 }, 404]);
    expect(AppError.from({ code: 'busy', message: 'Busy.' }).code).toBe('busy');
    expect(AppError.from(new Error('boom'))).toMatchObject({ code: 'internal', message: 'boom' });
    expect(AppError.from(new DOMException('x', 'AbortError')).code).toBe('cancelled');
    expect(AppError.from('text').message).toBe('text');
    expect(AppError.from(a)).toBe(a);
    expect(a.toJSON()).toEqual({ code: 'not_found', message: 'Gone.', details: { id: 1 } });
  });
});
