// Screenshots of every screen at 1280x800 light, 1280x800 dark and 420x800 into e2e/screenshots/.
// Also a smoke test of each screen's first render (no page errors) in each configuration.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { api, ensureTinyChat, IS_MOCK, launch, mock, open, sendAndWait, shot } from '../lib.mjs';

const CONFIGS = [
  { name: 'light', width: 1280, height: 800, colorScheme: 'light' },
  { name: 'dark', width: 1280, height: 800, colorScheme: 'dark' },
  { name: 'narrow', width: 420, height: 800, colorScheme: 'light' },
];

let conversationHash = '#/chat';
let modelHash = '#/discover/model/mlx-community/Qwen2.5-0.5B-Instruct-4bit';

before(async () => {
  await mock('reset');
  if (IS_MOCK) {
    await mock('config', { download_speed: 30_000_000 });
    await api('/downloads', { method: 'POST', body: JSON.stringify({ repo: 'mlx-community/SmolLM2-135M-Instruct-8bit' }) });
    await api('/downloads', { method: 'POST', body: JSON.stringify({ repo: 'meta-llama/Llama-3.2-1B-Instruct' }) });
    await api('/downloads', { method: 'POST', body: JSON.stringify({ repo: 'mlx-community/Mistral-7B-Instruct-v0.3-4bit' }) });
  } else {
    // The local test hub's model with a card and weights (tests/e2e/make_hub.py).
    modelHash = '#/discover/model/test-org/tiny-chat';
    await ensureTinyChat(); // a safetensors model for the Convert dialog, and a finished download
  }
  const b = await launch();
  await open(b.page, '#/chat');
  await sendAndWait(b.page, 'Write a palindrome checker');
  conversationHash = `#${b.page.url().split('#')[1]}`;
  await b.close();
  if (IS_MOCK) await new Promise((r) => setTimeout(r, 6000)); // the small download completes
});

for (const cfg of CONFIGS) {
  test(`screens at ${cfg.width}x${cfg.height} ${cfg.colorScheme}`, async () => {
    const b = await launch(cfg);
    const { page } = b;
    const narrow = cfg.width < 800;
    try {
      await open(page, '#/chat');
      await page.getByRole('heading', { name: 'What can I help with?' }).waitFor();
      await shot(page, `chat-empty-${cfg.name}`);

      await open(page, conversationHash);
      await page.locator('article.msg-assistant .md-block').first().waitFor();
      await page.waitForTimeout(300);
      await shot(page, `chat-${cfg.name}`);

      await page.getByRole('button', { name: 'Chat settings' }).click();
      await page.getByRole('complementary', { name: 'Chat settings' }).waitFor();
      await shot(page, `chat-settings-${cfg.name}`);
      await page.getByRole('button', { name: 'Close chat settings' }).click();

      if (narrow) {
        await page.getByRole('button', { name: 'Show conversations' }).click();
        await page.waitForTimeout(300);
        await shot(page, `chat-list-${cfg.name}`);
        await page.getByRole('button', { name: 'Hide conversations' }).click();
        await page.getByRole('button', { name: 'Open navigation' }).click();
        await page.waitForTimeout(300);
        await shot(page, `nav-${cfg.name}`);
        await page.getByRole('button', { name: 'Close navigation' }).click();
      }

      await open(page, '#/discover');
      await page.locator('a.result').first().waitFor();
      await shot(page, `discover-${cfg.name}`);

      await open(page, modelHash);
      await page.getByRole('region', { name: 'Model card' }).waitFor();
      await page.waitForTimeout(400);
      await shot(page, `model-${cfg.name}`);

      if (IS_MOCK) {
        await open(page, '#/discover/model/bartowski/Qwen2.5-0.5B-Instruct-GGUF');
        await page.locator('.variant').first().waitFor();
        await shot(page, `model-variants-${cfg.name}`);
      }

      await open(page, '#/downloads');
      await page.locator('li.dl, .empty').first().waitFor();
      await page.waitForTimeout(300);
      await shot(page, `downloads-${cfg.name}`);

      await open(page, '#/library');
      await page.locator('.model-row, .empty').first().waitFor();
      await shot(page, `library-${cfg.name}`);

      const convert = page.getByRole('button', { name: /^Convert / }).first();
      if (await convert.count()) {
        await convert.click();
        await page.locator('.estimate strong', { hasText: /\d/ }).waitFor();
        await shot(page, `convert-${cfg.name}`);
        await page.keyboard.press('Escape');
      }

      await open(page, '#/settings');
      await page.getByRole('heading', { name: 'Hugging Face' }).waitFor();
      await shot(page, `settings-${cfg.name}`);

      assert.deepEqual(b.errors, [], 'no page errors');
    } finally {
      await b.close();
    }
  });
}
