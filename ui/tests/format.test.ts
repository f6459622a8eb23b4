import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatCount,
  formatDateTime,
  formatEta,
  formatMs,
  formatParams,
  formatPercent,
  formatQuantization,
  formatRelative,
  formatSpeed,
  formatSpeedAndEta,
  formatTokensPerSecond,
  titleFrom,
} from '../src/lib/format';

const ctx = { locale: 'en-US', timeZone: 'UTC' };
const NOW = Date.UTC(2025, 5, 15, 12, 0, 0); // 2025-06-15 12:00 UTC

describe('formatting', () => {
  it('bytes (decimal units, sensible precision, carry at 1000)', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(950)).toBe('950 B');
    expect(formatBytes(1_234)).toBe('1.2 KB');
    expect(formatBytes(278_000_000)).toBe('278 MB');
    expect(formatBytes(12_400_000_000)).toBe('12.4 GB');
    expect(formatBytes(999_960_000)).toBe('1 GB');
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(-2_000)).toBe('-2 KB');
  });

  it('speed and ETA', () => {
    expect(formatSpeed(32_400_000)).toBe('32.4 MB/s');
    expect(formatSpeed(0)).toBe('—');
    expect(formatEta(8.2)).toBe('9 s');
    expect(formatEta(125)).toBe('2 min 5 s');
    expect(formatEta(120)).toBe('2 min');
    expect(formatEta(4_800)).toBe('1 h 20 min');
    expect(formatEta(3 * 86_400 + 4 * 3_600)).toBe('3 d 4 h');
    expect(formatEta(null)).toBe('—');
    expect(formatEta(Infinity)).toBe('—');
  });

  it("a download's speed and time left, never a row of dashes", () => {
    expect(formatSpeedAndEta(32_400_000, 125)).toBe('32.4 MB/s · 2 min 5 s left');
    // size unknown: the speed alone
    expect(formatSpeedAndEta(32_400_000, null)).toBe('32.4 MB/s');
    // nothing measured yet
    expect(formatSpeedAndEta(null, null)).toBe('estimating time left…');
    expect(formatSpeedAndEta(0, 12)).toBe('estimating time left…');
  });

  it('counts, parameters, percent, durations, speeds', () => {
    expect(formatCount(950)).toBe('950');
    expect(formatCount(1_234)).toBe('1.2k');
    expect(formatCount(48_213)).toBe('48k');
    expect(formatCount(2_840_114)).toBe('2.8M');
    expect(formatParams(134_515_008)).toBe('135M');
    expect(formatParams(1_235_814_400)).toBe('1.2B');
    expect(formatParams(70_600_000_000)).toBe('71B');
    expect(formatParams(null)).toBe('—');
    expect(formatPercent(0.256)).toBe('25%');
    expect(formatPercent(0.002)).toBe('0.2%');
    expect(formatPercent(1.5)).toBe('100%');
    expect(formatMs(320.4)).toBe('320 ms');
    expect(formatMs(1_234)).toBe('1.23 s');
    expect(formatTokensPerSecond(51.83)).toBe('51.8 tok/s');
    expect(formatTokensPerSecond(250.4)).toBe('250 tok/s');
    expect(formatQuantization({ bits: 4, group_size: 64 })).toBe('4-bit · group 64');
    expect(formatQuantization(null, 'bfloat16')).toBe('bfloat16');
  });

  it('relative times with an injected now, locale and time zone', () => {
    const c = { ...ctx, now: NOW };
    expect(formatRelative(NOW - 5_000, c)).toBe('just now');
    expect(formatRelative(NOW - 5 * 60_000, c)).toBe('5 min ago');
    expect(formatRelative(NOW - 3 * 3_600_000, c)).toBe('3 h ago');
    expect(formatRelative(NOW - 20 * 3_600_000, c)).toBe('yesterday');
    expect(formatRelative(NOW - 10 * 86_400_000, c)).toBe('Jun 5');
    expect(formatRelative(Date.UTC(2023, 2, 4), c)).toBe('Mar 4, 2023');
    expect(formatRelative(new Date(NOW - 10 * 86_400_000).toISOString(), c)).toBe('Jun 5');
    expect(formatRelative(null, c)).toBe('—');
    // The day boundary follows the time zone: 02:00 UTC is "yesterday" in Los Angeles.
    expect(formatRelative(Date.UTC(2025, 5, 15, 2), c)).toBe('10 h ago');
    expect(formatRelative(Date.UTC(2025, 5, 15, 2), { ...c, timeZone: 'America/Los_Angeles' })).toBe('yesterday');
  });

  it('date and time', () => {
    expect(formatDateTime(NOW, ctx)).toBe('Jun 15, 2025, 12:00 PM');
  });

  it('titles from a first message', () => {
    expect(titleFrom('  Hello\n  world ')).toBe('Hello world');
    expect(titleFrom('')).toBe('New chat');
    expect(titleFrom('Write a Python function that checks whether a string is a palindrome')).toBe('Write a Python function that checks whether a…');
  });
});
