// A small set of line icons drawn for this app (24x24 grid, stroked with currentColor).
import type { JSX } from 'solid-js';

const paths = {
  chat: 'M4 5.5A1.5 1.5 0 0 1 5.5 4h13A1.5 1.5 0 0 1 20 5.5v9a1.5 1.5 0 0 1-1.5 1.5H10l-4.5 4v-4h0A1.5 1.5 0 0 1 4 14.5z',
  discover: 'M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18zM15.5 8.5l-2 5l-5 2l2-5z',
  download: 'M12 4v11M7.5 10.5L12 15l4.5-4.5M5 19h14',
  library: 'M4 7l8-4l8 4l-8 4zM4 12l8 4l8-4M4 17l8 4l8-4',
  settings:
    'M12 9a3 3 0 1 0 0 6a3 3 0 1 0 0-6zM12 2.5v3M12 18.5v3M2.5 12h3M18.5 12h3M5.3 5.3l2.1 2.1M16.6 16.6l2.1 2.1M5.3 18.7l2.1-2.1M16.6 7.4l2.1-2.1',
  plus: 'M12 5v14M5 12h14',
  search: 'M10.5 4a6.5 6.5 0 1 0 0 13a6.5 6.5 0 1 0 0-13zM15.5 15.5L20 20',
  trash: 'M5 7h14M10 7V4.5h4V7M7 7l1 12.5h8L17 7M10.5 10.5v6M13.5 10.5v6',
  edit: 'M15.5 5.5l3 3L9 18H6v-3zM13.5 7.5l3 3',
  refresh: 'M19 12a7 7 0 1 1-2.05-4.95M19 4.5V9h-4.5',
  copy: 'M9 9h10v10H9zM15 9V5H5v10h4',
  check: 'M5 12.5l4.5 4.5L19 7',
  stop: 'M7 7h10v10H7z',
  send: 'M12 19V5M6 11l6-6l6 6',
  left: 'M14.5 6L8.5 12l6 6',
  right: 'M9.5 6l6 6l-6 6',
  menu: 'M4 7h16M4 12h16M4 17h16',
  close: 'M6 6l12 12M18 6L6 18',
  sliders: 'M5 7h8M17 7h2M15 5v4M5 17h2M11 17h8M9 15v4M5 12h12M19 12h0',
  pause: 'M8.5 6v12M15.5 6v12',
  play: 'M8 5.5v13l10-6.5z',
  alert: 'M12 4l9 16H3zM12 10v4.5M12 17.2v.3',
  heart: 'M12 19s-7-4.4-7-9.5A3.8 3.8 0 0 1 12 7a3.8 3.8 0 0 1 7 2.5C19 14.6 12 19 12 19z',
  external: 'M14 5h5v5M19 5l-8 8M17 14v5H5V7h5',
  cpu: 'M8 8h8v8H8zM5 5h14v14H5zM9.5 2.5v2.5M14.5 2.5v2.5M9.5 19v2.5M14.5 19v2.5M2.5 9.5h2.5M2.5 14.5h2.5M19 9.5h2.5M19 14.5h2.5',
  folder: 'M3.5 6.5A1.5 1.5 0 0 1 5 5h4l2 2h8a1.5 1.5 0 0 1 1.5 1.5v9A1.5 1.5 0 0 1 19 19H5a1.5 1.5 0 0 1-1.5-1.5z',
  convert: 'M5 8h11l-3-3M19 16H8l3 3',
  lock: 'M6.5 11h11v8.5h-11zM9 11V8a3 3 0 0 1 6 0v3',
  sparkle: 'M12 4l1.8 5.2L19 11l-5.2 1.8L12 18l-1.8-5.2L5 11l5.2-1.8z',
} as const;

export type IconName = keyof typeof paths;

export function Icon(props: { name: IconName; size?: number; class?: string; title?: string }): JSX.Element {
  const size = () => props.size ?? 18;
  return (
    <svg
      class={`icon ${props.class ?? ''}`}
      width={size()}
      height={size()}
      viewBox="0 0 24 24"
      fill="none"
      stroke="currentColor"
      stroke-width="1.75"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden={props.title ? undefined : 'true'}
      role={props.title ? 'img' : undefined}
    >
      {props.title && <title>{props.title}</title>}
      <path d={paths[props.name]} />
    </svg>
  );
}
