// The library (local models) and system info.
import { createMemo, createRoot, createSignal } from 'solid-js';
import { api } from '../services';
import type { Id, LocalModel, SystemInfo } from '../services/types';

const [modelMap, setModelMap] = createSignal<ReadonlyMap<Id, LocalModel>>(new Map());
const [totalSize, setTotalSize] = createSignal(0);
const [loaded, setLoaded] = createSignal(false);
const [error, setError] = createSignal<unknown>(null);
const [system, setSystem] = createSignal<SystemInfo | null>(null);

let inFlight: Promise<void> | null = null;

export function refreshModels(): Promise<void> {
  inFlight ??= api()
    .listModels()
    .then(({ models, total_size_bytes }) => {
      const next = new Map<Id, LocalModel>();
      for (const m of models) next.set(m.id, m);
      setModelMap(next);
      setTotalSize(total_size_bytes);
      setLoaded(true);
      setError(null);
    })
    .catch((e) => {
      setError(e);
    })
    .finally(() => (inFlight = null));
  return inFlight;
}

export function putModel(model: LocalModel): void {
  const next = new Map(modelMap());
  next.set(model.id, model);
  setModelMap(next);
}

export function dropModel(id: Id): void {
  const next = new Map(modelMap());
  const m = next.get(id);
  next.delete(id);
  setModelMap(next);
  if (m) setTotalSize(Math.max(0, totalSize() - m.size_bytes));
}

export async function refreshSystem(): Promise<SystemInfo> {
  const s = await api().getSystem();
  setSystem(s);
  return s;
}

const ids = createRoot(() => createMemo<Id[]>(
  () =>
    [...modelMap().values()]
      .sort((a, b) => (b.last_used_at ?? b.added_at) - (a.last_used_at ?? a.added_at) || a.name.localeCompare(b.name))
      .map((m) => m.id),
  [],
  { equals: (a, b) => a.length === b.length && a.every((id, i) => id === b[i]) },
));

export const models = {
  ids,
  get: (id: Id | null | undefined) => (id ? modelMap().get(id) : undefined),
  all: () => ids().map((id) => modelMap().get(id)!),
  totalSize,
  loaded,
  error,
};

export { system };

/** The server refuses downloads, imports, conversions and settings changes: an exposed
 * `cortex serve --library-only` (docs/APP_API.md). The UI offers none of them there. */
export const libraryOnly = (): boolean => system()?.library_only === true;
