// Mock-only: a model reply and a model card full of XSS payloads. Nothing may run: no dialog, no
// window flag set by a payload, and nothing dangerous left in the DOM.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IS_MOCK, launch, mock, open, sendAndWait } from '../lib.mjs';

let b;
before(async () => {
  if (!IS_MOCK) return;
  await mock('reset');
  b = await launch();
});
after(async () => b?.close());

async function assertInert(page, scope, dialogs) {
  await page.waitForTimeout(500); // give onerror/onload handlers their chance
  const report = await page.evaluate((sel) => {
    const root = document.querySelector(sel);
    const all = root ? [...root.querySelectorAll('*')] : [];
    return {
      flag: window.__xss ?? null,
      scripts: root?.querySelectorAll('script').length ?? -1,
      frames: root?.querySelectorAll('iframe, object, embed, form, svg').length ?? -1,
      handlers: all.filter((el) => [...el.attributes].some((a) => a.name.startsWith('on'))).length,
      badLinks: [...(root?.querySelectorAll('a[href]') ?? [])].filter((a) => !/^(https?:|mailto:)/i.test(a.getAttribute('href'))).length,
      unsafeTargets: [...(root?.querySelectorAll('a[href]') ?? [])].filter((a) => a.target !== '_blank' || !/noopener/.test(a.rel) || !/noreferrer/.test(a.rel)).length,
      badImages: [...(root?.querySelectorAll('img[src]') ?? [])].filter((i) => !/^https?:/i.test(i.getAttribute('src'))).length,
      text: root?.textContent?.length ?? 0,
    };
  }, scope);
  assert.ok(report.text > 0, 'the content rendered');
  assert.deepEqual(
    { ...report, text: undefined },
    { flag: null, scripts: 0, frames: 0, handlers: 0, badLinks: 0, unsafeTargets: 0, badImages: 0, text: undefined },
  );
  assert.deepEqual(dialogs, [], 'no alert() ran');
}

test('a model reply with XSS payloads runs nothing', { skip: !IS_MOCK && 'mock-only' }, async () => {
  const { page, dialogs } = b;
  await open(page, '#/chat');
  await sendAndWait(page, 'Show me some xss payloads');
  await assertInert(page, 'article.msg-assistant:last-of-type .md', dialogs);
  // Clicking the neutered javascript: link does nothing either.
  await page.locator('article.msg-assistant .md', { hasText: 'click me' }).getByText('click me').click();
  await assertInert(page, 'article.msg-assistant:last-of-type .md', dialogs);
  // After a reload the saved reply is rendered again, still inert.
  await page.reload();
  await page.locator('article.msg-assistant .md-block').first().waitFor();
  await assertInert(page, 'article.msg-assistant:last-of-type .md', dialogs);
});

test('a model card with XSS payloads runs nothing', { skip: !IS_MOCK && 'mock-only' }, async () => {
  const { page, dialogs } = b;
  await open(page, '#/discover/model/evil-org/xss-card-test');
  await page.getByRole('heading', { name: 'XSS test card' }).waitFor();
  await assertInert(page, '.model-card .md', dialogs);
  const safe = page.locator('.model-card a', { hasText: 'a safe link' });
  assert.equal(await safe.getAttribute('href'), 'https://huggingface.co');
  assert.equal(await safe.getAttribute('rel'), 'noopener noreferrer');
});
