// Keyboard: Tab reaches the navigation, the conversation controls and the message box, each with a
// visible focus ring; a dialog opened from the keyboard closes with Esc.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, mock, open } from '../lib.mjs';

let b;
before(async () => {
  await mock('reset');
  b = await launch();
});
after(async () => b?.close());

test('Tab order reaches every main control, with a visible focus ring', async () => {
  const { page } = b;
  await open(page, '#/chat');
  await page.getByRole('heading', { name: 'What can I help with?' }).waitFor();
  const seen = [];
  let unringed = [];
  // Every saved conversation adds three stops (open, rename, delete): a real server has several.
  for (let i = 0; i < 120 && !seen.includes('Message'); i++) {
    await page.keyboard.press('Tab');
    const info = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const cs = getComputedStyle(el);
      const name = el.getAttribute('aria-label') || el.textContent?.trim().slice(0, 40) || el.getAttribute('placeholder') || el.tagName;
      const ring = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0;
      const within = !!el.closest('.search-field, .composer'); // these show the ring on their wrapper
      return { name, ring: ring || within };
    });
    if (!info) continue;
    seen.push(info.name);
    if (!info.ring) unringed.push(info.name);
  }
  for (const name of ['Skip to content', 'Chat', 'Discover', 'Downloads', 'Library', 'Settings', 'New chat', 'Search conversations', 'Model', 'Chat settings', 'Message']) {
    assert.ok(seen.includes(name), `Tab reaches "${name}" (saw: ${seen.join(', ')})`);
  }
  assert.deepEqual(unringed, [], 'every focused control shows a focus ring');
});

test('a dialog opened from the keyboard closes with Esc and returns focus', async () => {
  const { page } = b;
  await open(page, '#/library');
  const del = page.getByRole('button', { name: /^Delete / }).first();
  await del.focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Delete this model?' });
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  const focused = await page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? '');
  assert.match(focused, /^Delete /, 'focus is back on the button that opened the dialog');
});
