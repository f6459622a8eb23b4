// Mock-only: long conversations render only the last 40 messages; "Show earlier" loads more.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BASE_URL, IS_MOCK, api, launch, mock, open } from '../lib.mjs';

let b;
before(async () => {
  if (!IS_MOCK) return;
  await mock('reset');
  await mock('config', { delay_ms: 0 });
  b = await launch();
});
after(async () => {
  await mock('config', { delay_ms: 18 });
  await b?.close();
});

test('a 44-message conversation shows 40, then all after "Show earlier"', { skip: !IS_MOCK && 'mock-only' }, async () => {
  const conv = await api('/conversations', { method: 'POST', body: JSON.stringify({ title: 'Long chat' }) });
  let parent = null;
  for (let i = 0; i < 22; i++) {
    const r = await fetch(`${BASE_URL}/api/conversations/${conv.id}/messages`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ parent_id: parent, content: `Question number ${i + 1}: say a short thing` }),
    });
    const text = await r.text();
    const done = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6))).find((e) => e.type === 'done');
    parent = done.message.id;
  }
  const { page } = b;
  await open(page, `#/chat/${conv.id}`);
  await page.locator('article.msg').first().waitFor();
  assert.equal(await page.locator('article.msg').count(), 40);
  const more = page.getByRole('button', { name: 'Show earlier messages (4)' });
  await more.click();
  await page.waitForFunction(() => document.querySelectorAll('article.msg').length === 44);
  assert.equal(await more.count(), 0);
  assert.match(await page.locator('article.msg-user').first().innerText(), /Question number 1:/);
});
