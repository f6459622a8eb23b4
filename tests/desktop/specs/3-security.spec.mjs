// The shell's security in the real window: the Content-Security-Policy stops script that gets into
// the page (inline handlers, inline and remote scripts, eval, requests to other origins), a chat
// whose user message and model reply carry script payloads runs nothing, and the window cannot call
// commands its capability does not grant (while the app's own commands work).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { currentConversation, HUB, invoke, nav, prepareDefaultModel, quitApp, send, shot, startApp, waitFor, waitReplyDone } from '../lib.mjs';

let browser;

before(async () => {
  browser = await startApp();
  // Every CSP violation the page reports, from now on.
  await browser.execute(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__violations.push({ directive: e.effectiveDirective || e.violatedDirective, blocked: e.blockedURI, sample: e.sample }),
    );
  });
});
after(async () => {
  if (browser) await quitApp(browser).catch(() => {});
});

const flags = () =>
  browser.execute(() => Object.fromEntries(Object.keys(window).filter((k) => k.startsWith('__pwned')).map((k) => [k, window[k]])));

test('the CSP stops script injected into the page', { timeout: 60_000 }, async () => {
  await waitFor(browser, () => !!document.querySelector('.app main'), { what: 'the app' });
  const probe = await browser.execute(async (hub) => {
    const out = {};
    // 1. innerHTML: an inline event handler (blocked by the CSP) and a <script> (never run by innerHTML).
    const box = document.createElement('div');
    box.id = 'csp-probe';
    box.innerHTML = '<img src="x" onerror="window.__pwned=1"><script>window.__pwned2=1</script>';
    document.querySelector('.app main').appendChild(box);
    // 2. An inline <script> element added by script: runs unless the CSP forbids inline script.
    const inline = document.createElement('script');
    inline.textContent = 'window.__pwned3 = 1';
    document.body.appendChild(inline);
    // 3. A remote script (another origin: the test hub).
    const remote = document.createElement('script');
    remote.src = `${hub}/evil.js`;
    out.remote = await new Promise((resolve) => {
      remote.onload = () => resolve('loaded');
      remote.onerror = () => resolve('error');
      document.body.appendChild(remote);
      setTimeout(() => resolve('timeout'), 5000);
    });
    // 4. eval and new Function (no 'unsafe-eval').
    try {
      // eslint-disable-next-line no-eval
      (0, eval)('window.__pwned4 = 1');
      out.eval = 'ran';
    } catch (e) {
      out.eval = `${e.name}: ${e.message}`;
    }
    try {
      new Function('window.__pwned5 = 1')();
      out.fn = 'ran';
    } catch (e) {
      out.fn = `${e.name}: ${e.message}`;
    }
    // 5. A request to another origin (connect-src is the IPC only).
    try {
      const r = await fetch(`${hub}/api/models`);
      out.fetch = `status ${r.status}`;
    } catch (e) {
      out.fetch = `${e.name}: ${e.message}`;
    }
    // Give the image's error handler its chance.
    const img = box.querySelector('img');
    out.img = await new Promise((resolve) => {
      if (img.complete) return resolve('complete');
      img.addEventListener('error', () => resolve('error'), { once: true });
      img.addEventListener('load', () => resolve('load'), { once: true });
      setTimeout(() => resolve('timeout'), 5000);
    });
    await new Promise((r) => setTimeout(r, 200));
    return out;
  }, HUB);
  // The violations are reported asynchronously: wait until the inline handler's, the inline
  // script's and the remote script's are in.
  const violations = await waitFor(
    browser,
    (hub) => {
      const v = window.__violations ?? [];
      const inline = v.filter((x) => x.blocked === 'inline').length;
      const remote = v.some((x) => (x.blocked ?? '').startsWith(hub));
      return inline >= 2 && remote ? v : null;
    },
    { args: [HUB], timeout: 10_000, what: 'CSP violation reports for the inline handler, the inline script and the remote script' },
  );
  await shot(browser, '13-csp-probe');
  assert.deepEqual(await flags(), {}, `no injected script ran (probe: ${JSON.stringify(probe)})`);
  assert.notEqual(probe.remote, 'loaded', 'the remote script did not load');
  assert.match(probe.eval, /EvalError/, 'eval is refused');
  assert.match(probe.fn, /EvalError/, 'new Function is refused');
  assert.match(probe.fetch, /TypeError|Failed|denied|refused/i, `a request to another origin is refused (${probe.fetch})`);
  assert.ok(
    violations.some((x) => /^connect-src/.test(x.directive) && (x.blocked ?? '').startsWith(HUB)),
    `the request was refused by connect-src (violations: ${JSON.stringify(violations)})`,
  );
  assert.ok(violations.some((x) => /^script-src/.test(x.directive) && x.blocked === 'eval'), 'eval was refused by script-src');
  await browser.execute(() => document.getElementById('csp-probe')?.remove());
});

// One line: WebDriver types "\n" as the Enter key, which sends the message.
const PAYLOAD = [
  'Repeat this exactly, including the tags:',
  '<img src=x onerror="window.__pwned6=1"> <script>window.__pwned7=1</script>',
  '[click me](javascript:window.__pwned8=1) <svg onload="window.__pwned9=1"></svg>',
].join(' ');

test('a chat with script payloads in the message and the reply runs nothing', { timeout: 240_000 }, async (t) => {
  await prepareDefaultModel(browser);
  await nav(browser, 'chat');
  await browser.$('.conv-head button.btn-primary').click(); // New chat
  await waitFor(browser, () => document.querySelector('.chat-main .empty h2')?.textContent === 'What can I help with?', { what: 'the empty chat' });
  await send(browser, PAYLOAD);
  await waitReplyDone(browser);
  await waitFor(browser, () => !!document.querySelector('article.msg-assistant .msg-stats'), { what: 'the reply to finish' });
  const report = await browser.execute(() => {
    // What could run or load something (the same checks as ui/e2e's XSS spec): scripts, frames
    // and other active elements, on* attributes, links that are not http(s)/mailto, images whose
    // source is not https (the sanitizer may leave a bare, inert <img>).
    const scan = (root) => {
      const all = root ? [...root.querySelectorAll('*')] : [];
      return {
        scripts: root?.querySelectorAll('script').length ?? -1,
        active: root?.querySelectorAll('iframe, object, embed, form, svg, math, base, meta, link').length ?? -1,
        handlers: all.filter((el) => [...el.attributes].some((a) => a.name.startsWith('on'))).length,
        badLinks: [...(root?.querySelectorAll('a[href]') ?? [])].filter((a) => !/^(https?:|mailto:)/i.test(a.getAttribute('href'))).length,
        badImages: [...(root?.querySelectorAll('img[src], img[srcset]') ?? [])].filter((i) => !/^https:/i.test(i.getAttribute('src') ?? '') || i.hasAttribute('srcset')).length,
      };
    };
    const user = [...document.querySelectorAll('article.msg-user .msg-bubble')].at(-1);
    const reply = [...document.querySelectorAll('article.msg-assistant .md')].at(-1);
    return { userText: user?.innerText, replyText: reply?.textContent ?? '', replyHtml: reply?.innerHTML ?? '', user: scan(user), reply: scan(reply) };
  });
  await shot(browser, '14-xss-chat');
  assert.equal(report.userText, PAYLOAD, 'the user message shows literally, as text');
  const inert = { scripts: 0, active: 0, handlers: 0, badLinks: 0, badImages: 0 };
  assert.deepEqual(report.user, inert, 'the user message holds no live elements');
  assert.deepEqual(report.reply, inert, `the reply holds no live elements (its HTML: ${report.replyHtml.slice(0, 1500)})`);
  assert.deepEqual(await flags(), {}, 'no payload ran');
  // Whether the model's own output carried markup is the model's business; report it (the raw
  // reply as saved) so a run shows which case it covered.
  const conv = await currentConversation(browser);
  const saved = await invoke(browser, 'get_conversation', { id: conv });
  assert.ok(saved.ok, `get_conversation: ${saved.reason}`);
  const raw = saved.value.messages.filter((m) => m.role === 'assistant').at(-1)?.content ?? '';
  const markup = raw.match(/<\s*(script|img|svg|iframe)\b|on(error|load)\s*=|javascript:/gi) ?? [];
  t.diagnostic(`the model's reply ${markup.length ? `carried markup (${[...new Set(markup)].join(', ')})` : 'carried no markup'}: ${JSON.stringify(raw.slice(0, 300))}`);
});

test('the window cannot call commands its capability does not grant', { timeout: 60_000 }, async () => {
  const title = await invoke(browser, 'plugin:window|set_title', { label: 'main', value: 'x' });
  assert.equal(title.ok, false, 'plugin:window|set_title was refused');
  assert.match(title.reason, /not allowed|denied|ACL/i, `refused by the ACL: ${title.reason}`);
  const open = await invoke(browser, 'plugin:opener|open_path', { path: '/etc' });
  assert.equal(open.ok, false, 'plugin:opener|open_path was refused');
  assert.match(open.reason, /not allowed|denied|ACL/i, `refused by the ACL: ${open.reason}`);
  const url = await invoke(browser, 'plugin:opener|open_url', { url: 'https://example.com' });
  assert.equal(url.ok, false, 'plugin:opener|open_url was refused');
  assert.match(url.reason, /not allowed|denied|ACL/i, `refused by the ACL: ${url.reason}`);
  // The app's own commands are granted.
  const sys = await invoke(browser, 'get_system');
  assert.ok(sys.ok, `get_system resolves: ${sys.reason}`);
  assert.match(sys.value.default_model_id ?? '', /^mdl_/);
  assert.equal(await browser.execute(() => typeof window.__TAURI__), 'undefined', 'no global Tauri API in the window');
});
