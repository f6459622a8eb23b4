import { createSignal } from 'solid-js';

export interface Toast {
  id: number;
  text: string;
  kind: 'info' | 'success' | 'error';
  action?: { label: string; href: string };
}

const [toasts, setToasts] = createSignal<Toast[]>([]);
let next = 1;

export { toasts };

export function toast(text: string, kind: Toast['kind'] = 'info', action?: Toast['action'], ms = 5000): void {
  const id = next++;
  setToasts([...toasts(), { id, text, kind, action }]);
  setTimeout(() => dismiss(id), ms);
}

export function dismiss(id: number): void {
  setToasts(toasts().filter((t) => t.id !== id));
}
