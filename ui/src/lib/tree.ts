// Conversations are trees: every message has a parent; the visible branch is the path from the
// root to the conversation's current leaf. Pure functions over an immutable index, so a change
// (a new message, a finished reply) copies only the maps and keeps every other message object.
import type { Id, Message } from '../services/types';

export interface TreeIndex {
  readonly byId: ReadonlyMap<Id, Message>;
  /** Children of each parent (`null` = roots), oldest first. */
  readonly children: ReadonlyMap<Id | null, readonly Id[]>;
}

const byAge = (a: Message, b: Message) => a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export function buildIndex(messages: readonly Message[]): TreeIndex {
  const byId = new Map<Id, Message>();
  for (const m of messages) byId.set(m.id, m);
  const groups = new Map<Id | null, Message[]>();
  for (const m of byId.values()) {
    const parent = m.parent_id !== null && byId.has(m.parent_id) ? m.parent_id : null;
    let list = groups.get(parent);
    if (!list) groups.set(parent, (list = []));
    list.push(m);
  }
  const children = new Map<Id | null, Id[]>();
  for (const [parent, list] of groups) children.set(parent, list.sort(byAge).map((m) => m.id));
  return { byId, children };
}

export const emptyIndex: TreeIndex = buildIndex([]);

/** Adds a message or replaces one with the same id (e.g. a finished reply). */
export function upsertMessage(index: TreeIndex, message: Message): TreeIndex {
  const byId = new Map(index.byId);
  const existing = byId.get(message.id);
  byId.set(message.id, message);
  if (existing && existing.parent_id === message.parent_id) return { byId, children: index.children };
  const children = new Map(index.children);
  if (existing) {
    const oldParent = existing.parent_id !== null && byId.has(existing.parent_id) ? existing.parent_id : null;
    children.set(
      oldParent,
      (children.get(oldParent) ?? []).filter((id) => id !== message.id),
    );
  }
  const parent = message.parent_id !== null && byId.has(message.parent_id) ? message.parent_id : null;
  const siblings = [...(children.get(parent) ?? []), message.id];
  siblings.sort((a, b) => byAge(byId.get(a)!, byId.get(b)!));
  children.set(parent, siblings);
  return { byId, children };
}

/** Removes a message (only used for optimistic placeholders; the API never deletes messages). */
export function removeMessage(index: TreeIndex, id: Id): TreeIndex {
  const m = index.byId.get(id);
  if (!m) return index;
  const byId = new Map(index.byId);
  byId.delete(id);
  const children = new Map(index.children);
  const parent = m.parent_id !== null && index.byId.has(m.parent_id) ? m.parent_id : null;
  children.set(
    parent,
    (children.get(parent) ?? []).filter((c) => c !== id),
  );
  return { byId, children };
}

/** The most recent child at every step, down to a leaf. */
export function deepestLeaf(index: TreeIndex, id: Id): Id {
  let current = id;
  const seen = new Set<Id>();
  for (;;) {
    seen.add(current);
    const kids = index.children.get(current);
    if (!kids || kids.length === 0) return current;
    let newest = kids[0]!;
    for (const k of kids) {
      if (byAge(index.byId.get(k)!, index.byId.get(newest)!) > 0) newest = k;
    }
    if (seen.has(newest)) return current;
    current = newest;
  }
}

/** The leaf to show when the conversation names none (or a missing one): the newest root's deepest leaf. */
export function resolveLeaf(index: TreeIndex, leafId: Id | null): Id | null {
  if (leafId && index.byId.has(leafId)) return leafId;
  const roots = index.children.get(null);
  if (!roots || roots.length === 0) return null;
  return deepestLeaf(index, roots[roots.length - 1]!);
}

/** Root-to-leaf path of messages. */
export function visiblePath(index: TreeIndex, leafId: Id | null): Message[] {
  const leaf = resolveLeaf(index, leafId);
  const path: Message[] = [];
  const seen = new Set<Id>();
  let current = leaf ? index.byId.get(leaf) : undefined;
  while (current && !seen.has(current.id)) {
    seen.add(current.id);
    path.push(current);
    current = current.parent_id !== null ? index.byId.get(current.parent_id) : undefined;
  }
  return path.reverse();
}

export interface SiblingInfo {
  /** 1-based position among its siblings, oldest first. */
  position: number;
  count: number;
  ids: readonly Id[];
}

export function siblings(index: TreeIndex, id: Id): SiblingInfo {
  const m = index.byId.get(id);
  if (!m) return { position: 1, count: 1, ids: [id] };
  const parent = m.parent_id !== null && index.byId.has(m.parent_id) ? m.parent_id : null;
  const ids = index.children.get(parent) ?? [id];
  return { position: ids.indexOf(id) + 1, count: ids.length, ids };
}

/**
 * The leaf to show after flipping message `id` to its sibling `delta` steps away
 * (-1 = previous, +1 = next): the deepest leaf of that sibling, following the most recent child.
 * Returns null when there is no such sibling.
 */
export function switchBranch(index: TreeIndex, id: Id, delta: number): Id | null {
  const info = siblings(index, id);
  const target = info.ids[info.position - 1 + delta];
  if (target === undefined) return null;
  return deepestLeaf(index, target);
}

/** Where an edited user message goes: a sibling of it, i.e. a child of its parent. */
export function editParent(index: TreeIndex, id: Id): Id | null {
  return index.byId.get(id)?.parent_id ?? null;
}

/**
 * Replaces the index with the server's messages, keeping the objects of messages that did not
 * change (so their rendered DOM stays).
 */
export function mergeMessages(index: TreeIndex, messages: readonly Message[]): TreeIndex {
  const kept = messages.map((m) => {
    const old = index.byId.get(m.id);
    return old && sameMessage(old, m) ? old : m;
  });
  return buildIndex(kept);
}

function sameMessage(a: Message, b: Message): boolean {
  return (
    a.parent_id === b.parent_id &&
    a.content === b.content &&
    a.role === b.role &&
    JSON.stringify(a.stats) === JSON.stringify(b.stats) &&
    JSON.stringify(a.error) === JSON.stringify(b.error)
  );
}
