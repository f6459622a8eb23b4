import type { ErrorBody } from './types';

/** The one error type of the UI: `{code, message, details}` as the API sends it. */
export class AppError extends Error implements ErrorBody {
  readonly code: string;
  readonly details: Record<string, unknown> | null;
  /** HTTP status where there was one. */
  readonly status: number | null;

  constructor(code: string, message: string, details?: Record<string, unknown> | null, status?: number | null) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.details = details ?? null;
    this.status = status ?? null;
  }

  /** Turns anything thrown or received (API error bodies, Tauri rejections, exceptions) into an AppError. */
  static from(value: unknown, status?: number): AppError {
    if (value instanceof AppError) return value;
    if (isErrorBody(value)) return new AppError(value.code, value.message, value.details ?? null, status);
    if (typeof value === 'object' && value !== null && 'error' in value) {
      const inner = (value as { error: unknown }).error;
      if (isErrorBody(inner)) return new AppError(inner.code, inner.message, inner.details ?? null, status);
    }
    if (value instanceof DOMException && value.name === 'AbortError') {
      return new AppError('cancelled', 'Stopped.');
    }
    if (value instanceof Error) return new AppError('internal', value.message || 'Something went wrong.', null, status);
    if (typeof value === 'string' && value) return new AppError('internal', value, null, status);
    return new AppError('internal', 'Something went wrong.', null, status);
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.code === 'string' && typeof v.message === 'string';
}

export function isCancelled(error: unknown): boolean {
  return error instanceof AppError && error.code === 'cancelled';
}
