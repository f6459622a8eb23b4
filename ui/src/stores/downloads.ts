// Downloads and conversions: one store each, fed by the one event subscription (stores/events.ts).
import { createMemo, createRoot, createSignal } from 'solid-js';
import { api } from '../services';
import type { Conversion, Download, Id } from '../services/types';
import { aggregate, sortDownloads } from '../lib/downloads';

const [downloadMap, setDownloadMap] = createSignal<ReadonlyMap<Id, Download>>(new Map());
const [conversionMap, setConversionMap] = createSignal<ReadonlyMap<Id, Conversion>>(new Map());
const [downloadsLoaded, setDownloadsLoaded] = createSignal(false);

/** A progress event may arrive before the list; never let an older copy replace a newer one. */
function newer<T extends { updated_at: number }>(current: T | undefined, next: T): boolean {
  return !current || next.updated_at >= current.updated_at;
}

/** When each download's copy last came in (an event or an action's answer), for refreshDownloads. */
const receivedAt = new Map<Id, number>();

/**
 * A download's latest copy, from the event stream (in order) or an action's answer: it replaces ours.
 * (Not ordered by `updated_at`: cortex serve's progress snapshots keep the `updated_at` of the last
 * state change, which can be older than an earlier event's.)
 */
export function upsertDownload(d: Download): void {
  receivedAt.set(d.id, Date.now());
  const next = new Map(downloadMap());
  next.set(d.id, d);
  setDownloadMap(next);
}

export function removeDownload(id: Id): void {
  const next = new Map(downloadMap());
  next.delete(id);
  setDownloadMap(next);
}

export async function refreshDownloads(): Promise<void> {
  const asked = Date.now();
  const { downloads } = await api().listDownloads();
  const next = new Map<Id, Download>();
  for (const d of downloads) {
    // The list is the server's current state; keep our copy only when it came in after the list
    // was asked for (an event that raced the request).
    const current = downloadMap().get(d.id);
    const fresh = current && (receivedAt.get(d.id) ?? 0) > asked;
    next.set(d.id, fresh ? current : d);
  }
  setDownloadMap(next);
  setDownloadsLoaded(true);
}

export function upsertConversion(c: Conversion): void {
  const current = conversionMap().get(c.id);
  if (!newer(current, c)) return;
  const next = new Map(conversionMap());
  next.set(c.id, c);
  setConversionMap(next);
}

export async function refreshConversions(): Promise<void> {
  const { conversions } = await api().listConversions();
  const next = new Map<Id, Conversion>();
  for (const c of conversions) next.set(c.id, c);
  setConversionMap(next);
}

/** Row ids in display order; recomputed only when the order changes (rows keep their DOM and focus). */
const orderedIds = createRoot(() => createMemo<Id[]>(
  () => sortDownloads([...downloadMap().values()]).map((d) => d.id),
  [],
  { equals: (a, b) => a.length === b.length && a.every((id, i) => id === b[i]) },
));

export const downloads = {
  ids: orderedIds,
  get: (id: Id) => downloadMap().get(id),
  all: () => [...downloadMap().values()],
  loaded: downloadsLoaded,
  total: createRoot(() => createMemo(() => aggregate([...downloadMap().values()]))),
  byRepo: (repo: string) => [...downloadMap().values()].filter((d) => d.repo === repo).sort((a, b) => b.created_at - a.created_at)[0],
};

export const conversions = {
  get: (id: Id) => conversionMap().get(id),
  all: () => [...conversionMap().values()].sort((a, b) => b.created_at - a.created_at),
};
