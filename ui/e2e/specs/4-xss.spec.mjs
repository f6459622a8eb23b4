// A user message, a model reply and a model card full of XSS payloads. Nothing may run: no dialog,
// no window flag set by a payload, and nothing dangerous left in the DOM. Against `cortex serve` the
// card is test-org/tiny-chat's on the local test hub (tests/e2e/make_hub.py); the model-reply case
// needs a model that answers with chosen payloads, which only the mock has.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IS_MOCK, launch, mock, open, sendAndWait } from '../lib.mjs';

let b;
before(async () => {
  await mock('reset');
  b = await launch();
});
after(async () => b?.close());

async function assertInert(page, scope, dialogs) {
  await page.waitForTimeout(500); // give onerror/onload handlers their chance
  const report = await page.evaluate((sel) => {
    const root = [...document.querySelectorAll(sel)].at(-1); // the last match (e.g. the newest message)
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

const USER_PAYLOAD = [
  'Is this safe? <img src=x onerror="window.__xss=7"> <script>window.__xss=8</script>',
  '[click me](javascript:window.__xss=9) <a href="javascript:window.__xss=10">raw</a>',
  '<iframe src="javascript:window.__xss=11"></iframe> <svg onload="window.__xss=12"></svg>',
].join('\n');

test('a user message with XSS payloads is shown as text and runs nothing', async () => {
  const { page, dialogs } = b;
  await open(page, '#/chat');
  await sendAndWait(page, USER_PAYLOAD);
  const bubble = page.locator('article.msg-user .msg-bubble').last();
  assert.equal(await bubble.innerText(), USER_PAYLOAD, 'the payload shows literally');
  await assertInert(page, 'article.msg-user .msg-bubble', dialogs);
  await assertInert(page, 'article.msg-assistant .md', dialogs); // the reply too, whatever the model made of it
  await page.reload();
  await page.locator('article.msg-user .msg-bubble').last().waitFor();
  assert.equal(await page.locator('article.msg-user .msg-bubble').last().innerText(), USER_PAYLOAD);
  await assertInert(page, 'article.msg-user .msg-bubble', dialogs);
  await assertInert(page, 'article.msg-assistant .md', dialogs);
});

test('a model reply with XSS payloads runs nothing', { skip: !IS_MOCK && 'mock-only: needs a model that replies with chosen payloads' }, async () => {
  const { page, dialogs } = b;
  await open(page, '#/chat');
  await sendAndWait(page, 'Show me some xss payloads');
  await assertInert(page, 'article.msg-assistant .md', dialogs);
  // Clicking the neutered javascript: link does nothing either.
  await page.locator('article.msg-assistant .md', { hasText: 'click me' }).getByText('click me').click();
  await assertInert(page, 'article.msg-assistant .md', dialogs);
  // After a reload the saved reply is rendered again, still inert.
  await page.reload();
  await page.locator('article.msg-assistant .md-block').first().waitFor();
  await assertInert(page, 'article.msg-assistant .md', dialogs);
});

test('a model card with XSS payloads runs nothing', async () => {
  const { page, dialogs } = b;
  await open(page, IS_MOCK ? '#/discover/model/evil-org/xss-card-test' : '#/discover/model/test-org/tiny-chat');
  await page.getByRole('heading', { name: IS_MOCK ? 'XSS test card' : 'Tiny chat' }).waitFor();
  await assertInert(page, '.model-card .md', dialogs);
  // The payloads' text is still there, as text.
  await page.locator('.model-card', { hasText: 'click me' }).waitFor();
  await page.locator('.model-card').getByText('click me').click();
  await assertInert(page, '.model-card .md', dialogs);
  if (!IS_MOCK) return; // test-org/tiny-chat's card has no ordinary link
  const safe = page.locator('.model-card a', { hasText: 'a safe link' });
  assert.equal(await safe.getAttribute('href'), 'https://huggingface.co');
  assert.equal(await safe.getAttribute('rel'), 'noopener noreferrer');
});
