// Error codes -> what to tell people and what they can do about it (with a button that goes there).
import type { ErrorBody } from '../services/types';

export type ErrorAction =
  | { kind: 'retry'; label: string }
  | { kind: 'navigate'; label: string; href: string }
  | { kind: 'external'; label: string; href: string };

export interface ErrorView {
  title: string;
  message: string;
  actions: ErrorAction[];
}

export interface ErrorContext {
  /** The Hugging Face repo the operation was about, if any. */
  repo?: string | null;
  /** Whether the operation can be retried from where the error is shown. */
  retryable?: boolean;
}

export function modelPageHref(repo: string): string {
  return `#/discover/model/${repo.split('/').map(encodeURIComponent).join('/')}`;
}

const settings = (label = 'Open Settings'): ErrorAction => ({ kind: 'navigate', label, href: '#/settings' });

export function describeError(error: Pick<ErrorBody, 'code' | 'message' | 'details'>, ctx: ErrorContext = {}): ErrorView {
  const details = (error.details ?? {}) as Record<string, unknown>;
  const repo = ctx.repo ?? (typeof details.repo === 'string' ? details.repo : null);
  const retry: ErrorAction[] = ctx.retryable ? [{ kind: 'retry', label: 'Retry' }] : [];
  switch (error.code) {
    case 'invalid_api_key':
      return {
        title: 'This server needs an API key',
        message: 'CortexStream was started with --api-key. Enter the key in Settings, then retry.',
        actions: [settings('Enter the key in Settings'), ...retry],
      };
    case 'unauthorized':
      return {
        title: 'Access to this model was refused',
        message:
          'The repository is gated or the token was not accepted. Accept the license on the model page, or add a Hugging Face token in Settings, then retry.',
        actions: [
          ...(repo ? [{ kind: 'navigate', label: 'Open model page', href: modelPageHref(repo) } as const] : []),
          settings('Add a token in Settings'),
          ...retry,
        ],
      };
    case 'disk_full':
      return {
        title: 'The disk is full',
        message: 'Free some space (delete models you no longer use in Library) or choose another models folder in Settings, then retry.',
        actions: [{ kind: 'navigate', label: 'Open Library', href: '#/library' }, settings('Change models folder'), ...retry],
      };
    case 'hub_unreachable':
      return {
        title: 'Hugging Face cannot be reached',
        message: 'Check your internet connection, or set a mirror endpoint in Settings, then retry.',
        actions: [...retry, settings('Set a mirror')],
      };
    case 'rate_limited':
      return {
        title: 'Too many requests',
        message: 'Hugging Face is limiting requests. Wait a minute and retry; a token in Settings raises the limit.',
        actions: [...retry, settings('Add a token in Settings')],
      };
    case 'model_load_failed':
      return {
        title: 'The model failed to load',
        message: error.message || 'The model could not be loaded. Try again, or pick another model.',
        actions: [...retry, { kind: 'navigate', label: 'Open Library', href: '#/library' }],
      };
    case 'busy':
      return {
        title: 'Busy',
        message: error.message || 'Another task is using the model. Try again in a moment.',
        actions: retry,
      };
    case 'network':
      return {
        title: 'Cannot reach CortexStream',
        message: 'The app’s back end is not answering. Check that it is running, then retry.',
        actions: retry,
      };
    case 'not_found':
      return { title: 'Not found', message: error.message || 'It may have been deleted.', actions: [] };
    case 'conflict':
      return { title: 'Already exists', message: error.message, actions: [] };
    case 'invalid_input':
      return { title: 'Check the input', message: error.message, actions: [] };
    case 'cancelled':
      return { title: 'Cancelled', message: error.message || 'Cancelled.', actions: retry };
    case 'forbidden_origin':
      return { title: 'Refused', message: 'The server refused a request from this page’s origin.', actions: [] };
    default:
      return { title: 'Something went wrong', message: error.message || 'An unexpected error occurred.', actions: retry };
  }
}
