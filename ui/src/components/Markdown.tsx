// Renders Markdown as a keyed list of blocks. Finished blocks keep their DOM; while `live`, the
// source is re-lexed at most once per animation frame and only changed blocks are re-rendered.
import { createEffect, createSignal, For, onCleanup, type JSX } from 'solid-js';
import { lexBlocks, renderBlock, type Block } from '../lib/markdown';

export function Markdown(props: { source: string; live?: boolean; baseUrl?: string | null; class?: string }): JSX.Element {
  const [blocks, setBlocks] = createSignal<Block[]>([]);
  let frame = 0;
  let latest = '';

  const update = () => {
    frame = 0;
    setBlocks((prev) => lexBlocks(latest, prev, !!props.live));
  };

  createEffect(() => {
    latest = props.source;
    const live = !!props.live;
    if (live) {
      if (!frame) frame = requestAnimationFrame(update);
    } else {
      if (frame) cancelAnimationFrame(frame);
      update();
    }
  });
  onCleanup(() => frame && cancelAnimationFrame(frame));

  return (
    <div class={`md ${props.class ?? ''}`}>
      <For each={blocks()}>{(block) => renderBlock(block, { baseUrl: props.baseUrl ?? null })}</For>
    </div>
  );
}
