// Long conversations render only the last 40 messages; "Show earlier" loads more. Against
// `cortex serve` the 22 replies come from a copy of the tiny test model (fast, capped at 4 tokens).
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { BASE_URL, IS_MOCK, api, importTinyModel, launch, mock, open } from '../lib.mjs';

let b;
let tiny = null;
before(async () => {
  await mock('reset');
  await mock('config', { delay_ms: 0 });
  b = await launch();
});
after(async () => {
  await mock('config', { delay_ms: 18 });
  await b?.close();
  if (tiny) {
    await api(`/models/${tiny.model.id}`, { method: 'DELETE' }).catch(() => {});
    rmSync(tiny.dir, { recursive: true, force: true });
  }
});

test('a 44-message conversation shows 40, then all after "Show earlier"', async () => {
  if (!IS_MOCK) tiny = await importTinyModel('e2e-window-tiny', { max_tokens: 4 });
  const conv = await api('/conversations', {
    method: 'POST',
    body: JSON.stringify({ title: 'Long chat', ...(tiny ? { model_id: tiny.model.id } : {}) }),
  });
  let parent = null;
  for (let i = 0; i < 22; i++) {
    const r = await fetch(`${BASE_URL}/api/conversations/${conv.id}/messages`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ parent_id: parent, content: `Question number ${i + 1}: say a short thing` }),
    });
    const text = await r.text();
    const done = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6))).find((e) => e.type === 'done');
    assert.ok(done, `reply ${i + 1} finished: ${text.slice(-300)}`);
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
