import { describe, expect, it } from 'vitest';
import { actionsFor, aggregate, downloadBytes, downloadFraction, sortDownloads } from '../src/lib/downloads';
import type { Download } from '../src/services/types';

function dl(partial: Partial<Download>): Download {
  return {
    id: 'dl_1',
    repo: 'org/m',
    revision: 'main',
    include: null,
    state: 'running',
    total_bytes: 0,
    done_bytes: 0,
    speed_bps: 0,
    eta_s: null,
    files: [],
    error: null,
    model_id: null,
    created_at: 0,
    updated_at: 0,
    ...partial,
  };
}

describe('download progress', () => {
  it('weights progress by bytes, not by file count', () => {
    const d = dl({
      files: [
        { path: 'config.json', size: 1_000, done: 1_000 },
        { path: 'model.safetensors', size: 99_000, done: 0 },
      ],
    });
    expect(downloadFraction(d)).toBeCloseTo(0.01);
    expect(downloadBytes(d)).toEqual({ done: 1_000, total: 100_000 });
  });

  it('takes the overall count when the per-file counts lag, and a completed download is whole', () => {
    // As `cortex serve` reports a file in flight: done_bytes counts it, files[].done not yet.
    const files = [
      { path: 'config.json', size: 1_000, done: 1_000 },
      { path: 'model.safetensors', size: 99_000, done: 0 },
    ];
    expect(downloadBytes(dl({ files, done_bytes: 31_000, total_bytes: 100_000 }))).toEqual({ done: 31_000, total: 100_000 });
    expect(downloadBytes(dl({ state: 'completed', files: [], done_bytes: 0, total_bytes: 100_000 }))).toEqual({ done: 100_000, total: 100_000 });
  });

  it('falls back to the totals when no files are listed, and clamps', () => {
    expect(downloadFraction(dl({ total_bytes: 200, done_bytes: 50 }))).toBe(0.25);
    expect(downloadFraction(dl({ total_bytes: 0, done_bytes: 0 }))).toBe(0);
    expect(downloadFraction(dl({ files: [{ path: 'a', size: 10, done: 50 }] }))).toBe(1);
    expect(downloadFraction(dl({ state: 'completed', total_bytes: 10, done_bytes: 3 }))).toBe(1);
  });

  it('aggregates active downloads by bytes with summed speed and an ETA', () => {
    const all = [
      dl({ id: 'a', state: 'running', total_bytes: 1_000, done_bytes: 500, speed_bps: 100 }),
      dl({ id: 'b', state: 'paused', total_bytes: 3_000, done_bytes: 0, speed_bps: 999 }),
      dl({ id: 'c', state: 'completed', total_bytes: 5_000, done_bytes: 5_000 }),
      dl({ id: 'd', state: 'retrying', total_bytes: 1_000, done_bytes: 500, speed_bps: 50 }),
    ];
    const t = aggregate(all);
    expect(t.count).toBe(3);
    expect(t.total).toBe(5_000);
    expect(t.done).toBe(1_000);
    expect(t.fraction).toBeCloseTo(0.2);
    expect(t.speed).toBe(150);
    expect(t.eta).toBeCloseTo(4_000 / 150);
  });

  it('has no ETA without speed, and nothing active is zero', () => {
    expect(aggregate([dl({ state: 'paused', total_bytes: 10 })]).eta).toBeNull();
    expect(aggregate([])).toEqual({ count: 0, done: 0, total: 0, fraction: 0, speed: 0, eta: null });
  });

  it('offers the actions each state allows', () => {
    expect(actionsFor('running')).toEqual(['pause', 'cancel']);
    expect(actionsFor('retrying')).toEqual(['pause', 'cancel']);
    expect(actionsFor('paused')).toEqual(['resume', 'cancel']);
    expect(actionsFor('failed')).toEqual(['retry', 'forget']);
    expect(actionsFor('completed')).toEqual(['forget']);
  });

  it('sorts active first, then newest', () => {
    const sorted = sortDownloads([
      dl({ id: 'old-done', state: 'completed', created_at: 1 }),
      dl({ id: 'new-done', state: 'completed', created_at: 5 }),
      dl({ id: 'active', state: 'running', created_at: 2 }),
    ]);
    expect(sorted.map((d) => d.id)).toEqual(['active', 'new-done', 'old-done']);
  });
});
