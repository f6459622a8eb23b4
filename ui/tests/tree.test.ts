import { describe, expect, it } from 'vitest';
import {
  buildIndex,
  deepestLeaf,
  editParent,
  mergeMessages,
  removeMessage,
  resolveLeaf,
  siblings,
  switchBranch,
  upsertMessage,
  visiblePath,
} from '../src/lib/tree';
import type { Message } from '../src/services/types';

let clock = 1000;
function msg(id: string, parent: string | null, role: Message['role'] = 'user', content = id): Message {
  return { id, parent_id: parent, role, content, created_at: clock++, model_id: null, stats: null, error: null };
}

// u1 -> a1 -> u2 -> a2
//    -> a1b (regenerated)  -> u3 -> a3
function sample() {
  clock = 1000;
  return [msg('u1', null), msg('a1', 'u1', 'assistant'), msg('u2', 'a1'), msg('a2', 'u2', 'assistant'), msg('a1b', 'u1', 'assistant'), msg('u3', 'a1b'), msg('a3', 'u3', 'assistant')];
}

const ids = (m: Message[]) => m.map((x) => x.id);

describe('conversation tree', () => {
  it('walks parent_id from the current leaf to the root', () => {
    const idx = buildIndex(sample());
    expect(ids(visiblePath(idx, 'a2'))).toEqual(['u1', 'a1', 'u2', 'a2']);
    expect(ids(visiblePath(idx, 'a3'))).toEqual(['u1', 'a1b', 'u3', 'a3']);
    expect(ids(visiblePath(idx, 'a1'))).toEqual(['u1', 'a1']);
  });

  it('without a (valid) leaf shows the newest root’s most recent branch', () => {
    const idx = buildIndex(sample());
    expect(resolveLeaf(idx, null)).toBe('a3');
    expect(resolveLeaf(idx, 'missing')).toBe('a3');
    expect(visiblePath(buildIndex([]), null)).toEqual([]);
  });

  it('lists siblings oldest first with a 1-based position', () => {
    const idx = buildIndex(sample());
    expect(siblings(idx, 'a1')).toMatchObject({ position: 1, count: 2, ids: ['a1', 'a1b'] });
    expect(siblings(idx, 'a1b')).toMatchObject({ position: 2, count: 2 });
    expect(siblings(idx, 'u1')).toMatchObject({ position: 1, count: 1 });
  });

  it('switching goes to the deepest leaf of the sibling, following the most recent child', () => {
    const idx = buildIndex(sample());
    expect(switchBranch(idx, 'a1', 1)).toBe('a3');
    expect(switchBranch(idx, 'a1b', -1)).toBe('a2');
    expect(switchBranch(idx, 'a1', -1)).toBeNull();
    expect(switchBranch(idx, 'a1b', 1)).toBeNull();
    // With two children, the most recent one is followed.
    const more = upsertMessage(idx, msg('u2b', 'a1'));
    expect(deepestLeaf(more, 'a1')).toBe('u2b');
  });

  it('regenerate adds an assistant sibling; i / n grows', () => {
    let idx = buildIndex(sample());
    idx = upsertMessage(idx, msg('a1c', 'u1', 'assistant'));
    expect(siblings(idx, 'a1c')).toMatchObject({ position: 3, count: 3 });
    expect(ids(visiblePath(idx, 'a1c'))).toEqual(['u1', 'a1c']);
    expect(siblings(idx, 'a1')).toMatchObject({ position: 1, count: 3 });
  });

  it('edit posts a sibling of the edited user message', () => {
    let idx = buildIndex(sample());
    const parent = editParent(idx, 'u2');
    expect(parent).toBe('a1');
    idx = upsertMessage(idx, msg('u2b', parent));
    idx = upsertMessage(idx, msg('a2b', 'u2b', 'assistant'));
    expect(siblings(idx, 'u2b')).toMatchObject({ position: 2, count: 2 });
    expect(ids(visiblePath(idx, 'a2b'))).toEqual(['u1', 'a1', 'u2b', 'a2b']);
    expect(switchBranch(idx, 'u2b', -1)).toBe('a2');
    // Editing the first message makes a second root.
    expect(editParent(idx, 'u1')).toBeNull();
    idx = upsertMessage(idx, msg('u1b', null));
    expect(siblings(idx, 'u1b')).toMatchObject({ position: 2, count: 2 });
  });

  it('upsert keeps other message objects and replaces a finished reply in place', () => {
    const idx = buildIndex(sample());
    const a2 = idx.byId.get('a2')!;
    const next = upsertMessage(idx, { ...a2, content: 'final', stats: null });
    expect(next.byId.get('u1')).toBe(idx.byId.get('u1'));
    expect(next.byId.get('a2')!.content).toBe('final');
    expect(siblings(next, 'a2').count).toBe(1);
    expect(idx.byId.get('a2')!.content).toBe('a2'); // immutable
  });

  it('removes an optimistic placeholder', () => {
    const idx = upsertMessage(buildIndex(sample()), msg('tmp_1', 'a2'));
    const back = removeMessage(idx, 'tmp_1');
    expect(back.byId.has('tmp_1')).toBe(false);
    expect(back.children.get('a2') ?? []).toEqual([]);
  });

  it('merging the server’s copy keeps unchanged objects', () => {
    const idx = buildIndex(sample());
    const fromServer = sample().map((m) => (m.id === 'a3' ? { ...m, content: 'changed' } : { ...m }));
    const merged = mergeMessages(idx, fromServer);
    expect(merged.byId.get('u1')).toBe(idx.byId.get('u1'));
    expect(merged.byId.get('a3')).not.toBe(idx.byId.get('a3'));
    expect(merged.byId.get('a3')!.content).toBe('changed');
  });

  it('survives cycles and orphans', () => {
    clock = 1;
    const idx = buildIndex([msg('x', 'y'), msg('y', 'x'), msg('o', 'gone')]);
    expect(visiblePath(idx, 'x').length).toBeLessThanOrEqual(2);
    expect(ids(visiblePath(idx, 'o'))).toEqual(['o']);
  });
});
