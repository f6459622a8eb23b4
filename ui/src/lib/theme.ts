// Light/dark/system, applied at once as data-theme on <html> (CSS variables do the rest).
import { createSignal } from 'solid-js';
import type { Theme } from '../services/types';

const KEY = 'cortex.theme';

function stored(): Theme {
  try {
    const t = localStorage.getItem(KEY);
    if (t === 'light' || t === 'dark' || t === 'system') return t;
  } catch {
    /* no storage */
  }
  return 'system';
}

const [theme, setThemeSignal] = createSignal<Theme>(stored());
export { theme };

const media = typeof matchMedia !== 'undefined' ? matchMedia('(prefers-color-scheme: dark)') : null;

export function resolvedTheme(t: Theme = theme()): 'light' | 'dark' {
  if (t === 'system') return media?.matches ? 'dark' : 'light';
  return t;
}

function apply(): void {
  document.documentElement.dataset.theme = resolvedTheme();
}

media?.addEventListener('change', () => {
  if (theme() === 'system') apply();
});

export function setTheme(t: Theme): void {
  setThemeSignal(t);
  try {
    localStorage.setItem(KEY, t);
  } catch {
    /* no storage */
  }
  apply();
}
