// Formatting helpers. Deterministic: locale, time zone and "now" are parameters (the UI passes
// the user's; tests pass fixed ones). Sizes use decimal units, as Hugging Face and macOS do.

export interface FormatContext {
  locale?: string;
  timeZone?: string;
  now?: number;
}

function num(value: number, digits: number, locale?: string): string {
  return new Intl.NumberFormat(locale ?? 'en-US', {
    maximumFractionDigits: digits,
    minimumFractionDigits: 0,
  }).format(value);
}

const BYTE_UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

/** 0 B, 950 B, 1.2 KB, 278 MB, 12.4 GB */
export function formatBytes(bytes: number | null | undefined, locale?: string): string {
  if (bytes == null || !Number.isFinite(bytes)) return '—';
  if (bytes < 0) return `-${formatBytes(-bytes, locale)}`;
  let unit = 0;
  let value = bytes;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  // Round first, then carry (999.96 MB reads "1 GB", not "1000 MB").
  let digits = value < 100 ? 1 : 0;
  let rounded = Number(value.toFixed(digits));
  if (rounded >= 1000 && unit < BYTE_UNITS.length - 1) {
    rounded = 1;
    unit++;
    digits = 1;
  }
  return `${num(rounded, digits, locale)} ${BYTE_UNITS[unit]}`;
}

export function formatSpeed(bytesPerSecond: number | null | undefined, locale?: string): string {
  if (bytesPerSecond == null || !Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return '—';
  return `${formatBytes(bytesPerSecond, locale)}/s`;
}

/**
 * A running download's speed and time left: "32.4 MB/s · 2 min left", or "32.4 MB/s" while the
 * size is unknown; before any speed is measured, "estimating time left…" instead of dashes.
 */
export function formatSpeedAndEta(
  bytesPerSecond: number | null | undefined,
  seconds: number | null | undefined,
  locale?: string,
): string {
  const speed = formatSpeed(bytesPerSecond, locale);
  if (speed === '—') return 'estimating time left…';
  const eta = formatEta(seconds);
  return eta === '—' ? speed : `${speed} · ${eta} left`;
}

/** Remaining time: "8 s", "2 min 5 s", "1 h 20 min", "3 d 4 h"; unknown -> "—". */
export function formatEta(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) {
    const rest = s % 60;
    return rest ? `${m} min ${rest} s` : `${m} min`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    const rest = m % 60;
    return rest ? `${h} h ${rest} min` : `${h} h`;
  }
  const d = Math.floor(h / 24);
  const rest = h % 24;
  return rest ? `${d} d ${rest} h` : `${d} d`;
}

/** Compact counts for downloads and likes: 950, 1.2k, 34k, 1.5M */
export function formatCount(n: number | null | undefined, locale?: string): string {
  if (n == null || !Number.isFinite(n)) return '—';
  const abs = Math.abs(n);
  if (abs < 1000) return num(n, 0, locale);
  if (abs < 1e6) return `${num(n / 1e3, abs < 1e4 ? 1 : 0, locale)}k`;
  if (abs < 1e9) return `${num(n / 1e6, abs < 1e7 ? 1 : 0, locale)}M`;
  return `${num(n / 1e9, 1, locale)}B`;
}

/** Parameter counts: 135M, 494M, 1.2B, 7B, 70B */
export function formatParams(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n) || n <= 0) return '—';
  if (n < 1e6) return `${Math.round(n / 1e3)}K`;
  if (n < 1e9) return `${Math.round(n / 1e6)}M`;
  const b = n / 1e9;
  return `${b < 10 ? Number(b.toFixed(1)) : Math.round(b)}B`;
}

/** "320 ms", "1.2 s" */
export function formatMs(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${Number((ms / 1000).toFixed(ms < 10_000 ? 2 : 1))} s`;
}

export function formatTokensPerSecond(tps: number | null | undefined): string {
  if (tps == null || !Number.isFinite(tps)) return '—';
  return `${tps < 100 ? tps.toFixed(1) : Math.round(tps)} tok/s`;
}

export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return '0%';
  const p = Math.max(0, Math.min(1, fraction)) * 100;
  return `${p < 10 && p > 0 ? p.toFixed(1) : Math.floor(p)}%`;
}

export function formatQuantization(q: { bits: number; group_size: number } | null, dtype?: string | null): string {
  if (q) return `${q.bits}-bit · group ${q.group_size}`;
  return dtype ?? 'unquantized';
}

/** Turns a time (ms or ISO string) into milliseconds, or null. */
export function toMillis(value: number | string | null | undefined): number | null {
  if (value == null) return null;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

/**
 * Relative for recent times ("just now", "5 min ago", "3 h ago", "yesterday"), a date otherwise
 * ("Mar 4"; "Mar 4, 2023" in another year), in the given locale and time zone.
 */
export function formatRelative(value: number | string | null | undefined, ctx: FormatContext = {}): string {
  const t = toMillis(value);
  if (t == null) return '—';
  const now = ctx.now ?? Date.now();
  const diff = now - t;
  if (diff < 0 && diff > -60_000) return 'just now';
  if (diff >= 0) {
    if (diff < 60_000) return 'just now';
    if (diff < 3_600_000) return `${Math.floor(diff / 60_000)} min ago`;
    if (diff < 86_400_000 && sameDay(t, now, ctx)) return `${Math.floor(diff / 3_600_000)} h ago`;
    if (diff < 2 * 86_400_000 && sameDay(t, now - 86_400_000, ctx)) return 'yesterday';
  }
  const sameYear = part(t, 'year', ctx) === part(now, 'year', ctx);
  return new Intl.DateTimeFormat(ctx.locale ?? 'en-US', {
    timeZone: ctx.timeZone,
    month: 'short',
    day: 'numeric',
    ...(sameYear ? {} : { year: 'numeric' }),
  }).format(t);
}

export function formatDateTime(value: number | string | null | undefined, ctx: FormatContext = {}): string {
  const t = toMillis(value);
  if (t == null) return '—';
  return new Intl.DateTimeFormat(ctx.locale ?? 'en-US', {
    timeZone: ctx.timeZone,
    dateStyle: 'medium',
    timeStyle: 'short',
  }).format(t);
}

function part(t: number, type: 'year' | 'month' | 'day', ctx: FormatContext): string {
  return new Intl.DateTimeFormat('en-US', { timeZone: ctx.timeZone, [type]: 'numeric' }).format(t);
}

function sameDay(a: number, b: number, ctx: FormatContext): boolean {
  return (['year', 'month', 'day'] as const).every((p) => part(a, p, ctx) === part(b, p, ctx));
}

/** A first-message title: one line, at most `max` characters, cut at a word. */
export function titleFrom(text: string, max = 48): string {
  const line = text.replace(/\s+/g, ' ').trim();
  if (line.length <= max) return line || 'New chat';
  const cut = line.slice(0, max);
  const space = cut.lastIndexOf(' ');
  return `${(space > max * 0.6 ? cut.slice(0, space) : cut).trimEnd()}…`;
}
