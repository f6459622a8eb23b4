// Download progress, weighted by bytes (a 4 GB shard counts 4000 times a 1 MB config file).
import type { Download, DownloadAction, DownloadState } from '../services/types';

export const ACTIVE_STATES: ReadonlySet<DownloadState> = new Set(['queued', 'running', 'paused', 'retrying', 'verifying']);

export function isActive(d: Pick<Download, 'state'>): boolean {
  return ACTIVE_STATES.has(d.state);
}

/** Bytes done and total of one download, from its files where it lists them. */
export function downloadBytes(d: Pick<Download, 'files' | 'done_bytes' | 'total_bytes' | 'state'>): { done: number; total: number } {
  let done = Math.max(0, d.done_bytes);
  let total = Math.max(0, d.total_bytes);
  if (d.files.length > 0) {
    let fileDone = 0;
    let fileTotal = 0;
    for (const f of d.files) {
      fileTotal += Math.max(0, f.size);
      fileDone += Math.min(Math.max(0, f.done), Math.max(0, f.size));
    }
    // Per-file counts can lag the overall count (a file in flight): take the larger.
    if (fileTotal > 0) {
      total = fileTotal;
      done = Math.max(done, fileDone);
    }
  }
  // A completed download has all its bytes, whatever the last counts said.
  if (d.state === 'completed') done = total;
  return { done: total > 0 ? Math.min(done, total) : done, total };
}

export function downloadFraction(d: Pick<Download, 'files' | 'done_bytes' | 'total_bytes' | 'state'>): number {
  if (d.state === 'completed') return 1;
  const { done, total } = downloadBytes(d);
  return total > 0 ? Math.min(1, done / total) : 0;
}

export interface Aggregate {
  count: number;
  done: number;
  total: number;
  fraction: number;
  /** Sum of the running downloads' speeds. */
  speed: number;
  /** Seconds left for the whole lot at the current speed, or null. */
  eta: number | null;
}

/** The total over the active downloads (finished ones would pin the bar near 100%). */
export function aggregate(downloads: readonly Download[]): Aggregate {
  let done = 0;
  let total = 0;
  let speed = 0;
  let count = 0;
  for (const d of downloads) {
    if (!isActive(d)) continue;
    count++;
    const b = downloadBytes(d);
    done += b.done;
    total += b.total;
    if (d.state === 'running' || d.state === 'retrying') speed += Math.max(0, d.speed_bps);
  }
  const remaining = Math.max(0, total - done);
  return {
    count,
    done,
    total,
    fraction: total > 0 ? done / total : 0,
    speed,
    eta: speed > 0 ? remaining / speed : null,
  };
}

/** The actions a download's state allows, in the order the UI shows them. */
export function actionsFor(state: DownloadState): (DownloadAction | 'forget')[] {
  switch (state) {
    case 'queued':
    case 'running':
    case 'retrying':
      return ['pause', 'cancel'];
    case 'verifying':
      return ['cancel'];
    case 'paused':
      return ['resume', 'cancel'];
    case 'failed':
    case 'cancelled':
      return ['retry', 'forget'];
    case 'completed':
      return ['forget'];
  }
}

export const STATE_LABELS: Record<DownloadState, string> = {
  queued: 'Queued',
  running: 'Downloading',
  paused: 'Paused',
  retrying: 'Retrying',
  verifying: 'Verifying',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

/** Newest first, active ones on top. */
export function sortDownloads(list: readonly Download[]): Download[] {
  return [...list].sort((a, b) => Number(isActive(b)) - Number(isActive(a)) || b.created_at - a.created_at);
}
