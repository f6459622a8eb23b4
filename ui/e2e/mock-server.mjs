#!/usr/bin/env node
// In-memory mock of `cortex serve`'s app API (docs/APP_API.md) for UI development and the E2E
// specs: serves ui/dist at / and /api/* from memory. Replies stream a canned Markdown answer token
// by token; downloads and conversions make fake progress; one hub repo's card carries XSS payloads.
//
//   node e2e/mock-server.mjs [--port 8787] [--host 127.0.0.1] [--dist ../dist] [--api-key KEY]
//
// Mock-only controls (not part of the API): POST /__mock/reset, POST /__mock/config
// {delay_ms?, fail_next?: "model_load_failed"|..., download_speed?, api_key?: string|null,
//  reply_tokens?: number|null, library_only?: boolean}, POST /__mock/seed {messages: n} (one conversation of n alternating
// user/assistant messages; answers {conversation_id}).
// api_key (opt-in, like `cortex serve --api-key`): every /api route then needs
// `Authorization: Bearer <key>` and answers 401 {"error":{message,type,code:"invalid_api_key"}}
// otherwise; the UI's files and /__mock stay open. reply_tokens: every reply is exactly that many
// tokens (delay_ms 0 = as fast as the socket takes them). library_only: /api/system says so and
// downloads, imports, conversions and settings changes answer 403 forbidden, as an exposed
// `cortex serve --library-only` does.
import { createServer } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const PORT = Number(arg('port', process.env.PORT ?? 8787));
const HOST = arg('host', '127.0.0.1');
const DIST = arg('dist', fileURLToPath(new URL('../dist/', import.meta.url)));
const API_KEY = arg('api-key', process.env.MOCK_API_KEY ?? null);

const MB = 1_000_000;
const GB = 1_000_000_000;
const MACHINE = 16 * 1024 ** 3;

// ---- catalog of fake hub repos ----------------------------------------------------------------

const HUB = [
  { id: 'mlx-community/Qwen2.5-0.5B-Instruct-4bit', params: 494e6, downloads: 48213, likes: 61, mlx: true, arch: 'qwen2', size: 278 * MB, quant: '4-bit' },
  { id: 'mlx-community/Llama-3.2-1B-Instruct-4bit', params: 1.24e9, downloads: 130554, likes: 112, mlx: true, arch: 'llama', size: 695 * MB, quant: '4-bit' },
  { id: 'mlx-community/SmolLM2-135M-Instruct-8bit', params: 135e6, downloads: 9120, likes: 14, mlx: true, arch: 'llama', size: 145 * MB, quant: '8-bit' },
  { id: 'mlx-community/Qwen3-4B-4bit', params: 4.02e9, downloads: 88410, likes: 97, mlx: true, arch: 'qwen3', size: 2.26 * GB, quant: '4-bit' },
  { id: 'mlx-community/Mistral-7B-Instruct-v0.3-4bit', params: 7.25e9, downloads: 64002, likes: 208, mlx: true, arch: 'mistral', size: 4.08 * GB, quant: '4-bit' },
  { id: 'mlx-community/gemma-3-1b-it-4bit', params: 1e9, downloads: 40311, likes: 33, mlx: true, arch: 'gemma3_text', size: 733 * MB, quant: '4-bit' },
  { id: 'mlx-community/Meta-Llama-3.1-70B-Instruct-4bit', params: 70.6e9, downloads: 5022, likes: 41, mlx: true, arch: 'llama', size: 39.7 * GB, quant: '4-bit' },
  { id: 'meta-llama/Llama-3.2-1B-Instruct', params: 1.24e9, downloads: 2_840_114, likes: 1052, mlx: false, arch: 'llama', size: 2.47 * GB, quant: null, gated: 'manual', license: 'llama3.2' },
  { id: 'HuggingFaceTB/SmolLM2-360M-Instruct', params: 362e6, downloads: 301_220, likes: 142, mlx: false, arch: 'llama', size: 724 * MB, quant: null },
  { id: 'bartowski/Qwen2.5-0.5B-Instruct-GGUF', params: 494e6, downloads: 51_400, likes: 22, mlx: false, arch: 'qwen2', size: 0, quant: null, gguf: true },
  { id: 'evil-org/xss-card-test', params: 135e6, downloads: 3, likes: 0, mlx: true, arch: 'llama', size: 140 * MB, quant: '4-bit', xss: true },
];

const GGUF_VARIANTS = [
  { name: 'qwen2.5-0.5b-instruct-q4_0.gguf', size: 352 * MB, quantization: 'Q4_0' },
  { name: 'qwen2.5-0.5b-instruct-q8_0.gguf', size: 531 * MB, quantization: 'Q8_0' },
  { name: 'qwen2.5-0.5b-instruct-f16.gguf', size: 994 * MB, quantization: 'F16' },
];

function repoFiles(h) {
  if (h.gguf) return [...GGUF_VARIANTS.map((v) => ({ path: v.name, size: v.size })), { path: 'README.md', size: 4_210 }];
  const shards = h.size > 5 * GB ? Math.ceil(h.size / (5 * GB)) : 1;
  const weights =
    shards === 1
      ? [{ path: 'model.safetensors', size: h.size - 12 * MB }]
      : Array.from({ length: shards }, (_, i) => ({
          path: `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`,
          size: Math.round((h.size - 12 * MB) / shards),
        }));
  return [
    { path: 'config.json', size: 1_284 },
    ...weights,
    ...(shards > 1 ? [{ path: 'model.safetensors.index.json', size: 58_112 }] : []),
    { path: 'tokenizer.json', size: 11_418_266 },
    { path: 'tokenizer_config.json', size: 7_305 },
    { path: 'special_tokens_map.json', size: 613 },
    { path: 'README.md', size: 3_120 },
  ];
}

function card(h) {
  if (h.xss) {
    return [
      '# XSS test card',
      '',
      'This card tries everything a hostile model card could try.',
      '',
      '<img src=x onerror="window.__xss=(window.__xss||0)+1;alert(\'img\')">',
      '',
      '<script>window.__xss=(window.__xss||0)+1;alert("script")</script>',
      '',
      '[click me](javascript:window.__xss=(window.__xss||0)+1;alert(1))',
      '',
      '<a href="data:text/html,<script>alert(1)</script>">data link</a> and <a href="vbscript:msgbox(1)">vbscript link</a>',
      '',
      '<iframe src="javascript:window.top.__xss=1;alert(1)"></iframe>',
      '',
      '<svg onload="window.__xss=(window.__xss||0)+1"><circle r="5"/></svg>',
      '',
      '<details open ontoggle="window.__xss=(window.__xss||0)+1;alert(2)"><summary>details</summary>toggled</details>',
      '',
      '<form action="javascript:alert(1)"><button>submit</button></form>',
      '',
      '<a href="https://huggingface.co" onclick="window.__xss=1">a safe link with an onclick</a>',
      '',
      '```html',
      '<script>this is only code</script>',
      '```',
    ].join('\n');
  }
  const name = h.id.split('/')[1];
  return [
    `# ${name}`,
    '',
    `This model was converted to MLX format from [\`${name.replace(/-(4|8)bit$/, '')}\`](https://huggingface.co/${h.id}) using mlx-lm.`,
    'Refer to the [original model card](LICENSE) for more details on the model.',
    '',
    '## Use with mlx',
    '',
    '```bash',
    'pip install mlx-lm',
    '```',
    '',
    '```python',
    'from mlx_lm import load, generate',
    '',
    `model, tokenizer = load("${h.id}")`,
    'prompt = "hello"',
    'response = generate(model, tokenizer, prompt=prompt, verbose=True)',
    '```',
    '',
    '## Evaluation',
    '',
    '| Benchmark | Score |',
    '|---|---|',
    '| MMLU | 47.5 |',
    '| GSM8K | 41.6 |',
    '| HellaSwag | 52.1 |',
    '',
    '> Results are for the unquantized model; 4-bit quantization costs about one point.',
  ].join('\n');
}

// ---- replies ------------------------------------------------------------------------------------

const ANSWERS = [
  [
    'Here is a short answer, with some **Markdown** in it.',
    '',
    'A palindrome reads the same forwards and backwards. In Python:',
    '',
    '```python',
    'def is_palindrome(text: str) -> bool:',
    '    """Ignore case and anything that is not a letter or digit."""',
    '    chars = [c.lower() for c in text if c.isalnum()]',
    '    return chars == chars[::-1]',
    '',
    'assert is_palindrome("A man, a plan, a canal: Panama")',
    '```',
    '',
    'Three things to note:',
    '',
    '1. `str.isalnum()` drops spaces and punctuation.',
    '2. Slicing with `[::-1]` reverses the list.',
    '3. It runs in *O(n)* time and memory.',
    '',
    '| Input | Result |',
    '|---|---|',
    '| `"racecar"` | `True` |',
    '| `"hello"` | `False` |',
  ].join('\n'),
  [
    'Another take on it: compare from both ends and stop early.',
    '',
    '```rust',
    'fn is_palindrome(s: &str) -> bool {',
    '    let v: Vec<char> = s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();',
    '    v.iter().eq(v.iter().rev())',
    '}',
    '```',
    '',
    '- No extra copy of the reversed string.',
    '- Works with Unicode letters.',
  ].join('\n'),
  'A third version: `s == s[::-1]` after normalising, which is the shortest way to write it.',
];

const XSS_REPLY = [
  'Here are the payloads you asked for:',
  '',
  '<img src=x onerror="window.__xss=(window.__xss||0)+1;alert(\'img\')">',
  '',
  '<script>window.__xss=(window.__xss||0)+1;alert("script")</script>',
  '',
  '[click me](javascript:window.__xss=(window.__xss||0)+1;alert(1))',
  '',
  '<a href="data:text/html,<script>alert(1)</script>">data link</a>',
  '',
  '<iframe src="javascript:window.top.__xss=1;alert(1)"></iframe>',
  '',
  '<svg onload="window.__xss=(window.__xss||0)+1"></svg>',
  '',
  'And a [safe link](https://example.com).',
].join('\n');

function longReply() {
  const parts = ['# A long answer', ''];
  for (let i = 1; i <= 24; i++) {
    parts.push(`## Part ${i}`, '');
    parts.push(
      `This is paragraph ${i}. It has **bold**, *italic* and \`inline code\`, and it goes on for a while so that the reply is long enough to measure how the page copes with streaming: every token appends to the live message, and only that message should be re-rendered, at most once per animation frame.`,
      '',
    );
    if (i % 3 === 0) {
      parts.push('```typescript', `export function step${i}(input: number[]): number {`, '  let total = 0;', '  for (const x of input) total += x * x;', `  return Math.sqrt(total) / ${i};`, '}', '```', '');
    }
    if (i % 4 === 0) parts.push('- first point', '- second point with `code`', '- third point', '');
  }
  return parts.join('\n');
}

/** Exactly n token-sized pieces of the long Markdown reply, repeated as needed (benchmarks). */
function benchTokens(n) {
  const base = tokenize(longReply());
  return Array.from({ length: n }, (_, i) => base[i % base.length]);
}

function tokenize(text) {
  // Roughly token-sized pieces: words with their leading space, punctuation, newlines.
  return text.match(/\s*[\w']{1,6}|\s*[^\w\s]|\s+/g) ?? [];
}

// ---- state --------------------------------------------------------------------------------------

let state;
let seq = 0;
const now = () => Date.now();
const newId = (prefix) => `${prefix}_${(++seq).toString(36).padStart(4, '0')}${Math.random().toString(36).slice(2, 6)}`;

const defaultSettings = () => ({ system_prompt: null, temperature: null, top_p: null, top_k: null, max_tokens: null, context_length: null });

function model(partial) {
  return {
    path: `/home/me/.cortexstream/models/${partial.name}`,
    format: 'mlx',
    architecture: 'llama',
    parameters: null,
    quantization: null,
    dtype: 'float16',
    added_at: now() - 86_400_000 * 3,
    last_used_at: null,
    loaded: false,
    settings: defaultSettings(),
    ...partial,
  };
}

function reset() {
  for (const c of state?.clients ?? []) c.end();
  for (const t of state?.timers ?? []) clearInterval(t);
  state = {
    config: { delay_ms: 18, fail_next: null, download_speed: 120 * MB, api_key: API_KEY, reply_tokens: null, library_only: false },
    settings: {
      models_dir: '/home/me/.cortexstream/models',
      hf_endpoint: null,
      kv_memory_mb: null,
      theme: 'system',
      has_hf_token: false,
      hf_token_storage: null,
    },
    models: new Map(),
    conversations: new Map(),
    messages: new Map(), // conversation id -> Message[]
    downloads: new Map(),
    conversions: new Map(),
    active: new Map(), // conversation id -> running generation
    clients: new Set(),
    timers: new Set(),
  };
  const add = (m) => state.models.set(m.id, m);
  add(
    model({
      id: 'mdl_smollm2',
      name: 'SmolLM2-135M-Instruct',
      source: { kind: 'default' },
      parameters: 134_515_008,
      quantization: { bits: 4, group_size: 32 },
      size_bytes: 101 * MB,
      loaded: true,
      last_used_at: now() - 3_600_000,
      settings: { ...defaultSettings(), temperature: 0.7, max_tokens: 1024, context_length: 8192 },
    }),
  );
  add(
    model({
      id: 'mdl_qwen05',
      name: 'Qwen2.5-0.5B-Instruct-4bit',
      source: { kind: 'hub', repo: 'mlx-community/Qwen2.5-0.5B-Instruct-4bit', revision: 'main' },
      architecture: 'qwen2',
      parameters: 494_032_768,
      quantization: { bits: 4, group_size: 64 },
      size_bytes: 278 * MB,
      last_used_at: now() - 86_400_000 * 2,
    }),
  );
  add(
    model({
      id: 'mdl_llama1b',
      name: 'Llama-3.2-1B-Instruct',
      source: { kind: 'hub', repo: 'meta-llama/Llama-3.2-1B-Instruct', revision: 'main' },
      format: 'safetensors',
      parameters: 1_235_814_400,
      dtype: 'bfloat16',
      size_bytes: 2.47 * GB,
    }),
  );
}

const totalSize = () => [...state.models.values()].reduce((s, m) => s + m.size_bytes, 0);

function broadcast(event) {
  const line = `data: ${JSON.stringify(event)}\n\n`;
  for (const c of state.clients) c.write(line);
}

// ---- http helpers -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    Object.assign(this, { status, code, details });
  }
}
const notFound = (what) => new ApiError(404, 'not_found', `${what} not found.`);
const invalid = (message) => new ApiError(400, 'invalid_input', message);

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(text);
}

async function readJson(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  if (!raw) return {};
  try {
    return JSON.parse(raw);
  } catch {
    throw invalid('The request body is not JSON.');
  }
}

const MIME = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json' };

function serveStatic(req, res, pathname) {
  const safe = normalize(decodeURIComponent(pathname)).replace(/^(\.\.[/\\])+/, '');
  let file = join(DIST, safe);
  if (!file.startsWith(DIST) || !existsSync(file) || statSync(file).isDirectory()) file = join(DIST, 'index.html');
  if (!existsSync(file)) {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    return res.end('ui/dist is missing: run `npm run build` in ui/ first.');
  }
  res.writeHead(200, {
    'Content-Type': MIME[extname(file)] ?? 'application/octet-stream',
    'Cache-Control': file.includes('/assets/') ? 'max-age=31536000, immutable' : 'no-cache',
  });
  res.end(readFileSync(file));
}

// ---- operations ---------------------------------------------------------------------------------

function searchHub(params) {
  const q = (params.get('q') ?? '').toLowerCase();
  const mlxOnly = params.get('mlx_only') === 'true';
  const min = params.get('min_params') ? Number(params.get('min_params')) : null;
  const max = params.get('max_params') ? Number(params.get('max_params')) : null;
  const sort = params.get('sort') ?? 'downloads';
  const limit = Number(params.get('limit') ?? 30);
  let list = HUB.filter((h) => !h.xss || q.includes('xss'));
  list = list.filter((h) => h.id.toLowerCase().includes(q) && (!mlxOnly || h.mlx) && (min == null || h.params >= min) && (max == null || h.params <= max));
  const key = { downloads: (h) => h.downloads, likes: (h) => h.likes, trending: (h) => h.likes * 10 + h.downloads / 100, updated: (h) => h.params }[sort] ?? ((h) => h.downloads);
  list.sort((a, b) => key(b) - key(a));
  return {
    results: list.slice(0, limit).map((h, i) => ({
      id: h.id,
      author: h.id.split('/')[0],
      downloads: h.downloads,
      likes: h.likes,
      last_modified: new Date(now() - (i + 1) * 86_400_000 * 9).toISOString(),
      parameters: h.params,
      tags: [h.mlx ? 'mlx' : 'safetensors', 'text-generation'],
      pipeline_tag: 'text-generation',
      mlx: h.mlx,
    })),
  };
}

function hubModel(params) {
  const h = HUB.find((x) => x.id === params.get('id'));
  if (!h) throw new ApiError(404, 'not_found', `No model ${params.get('id')} on the hub.`, { repo: params.get('id') });
  const context = Number(params.get('context') ?? 4096);
  const files = repoFiles(h);
  const total = files.reduce((s, f) => s + f.size, 0);
  const variants = h.gguf
    ? GGUF_VARIANTS.map((v) => ({ name: v.name, include: [v.name, 'README.md'], size: v.size, quantization: v.quantization }))
    : [{ name: h.id.split('/')[1], include: ['*'], size: total, quantization: h.quant }];
  const weights = h.gguf ? GGUF_VARIANTS[0].size : h.size;
  const kv = Math.round(context * Math.max(24, Math.sqrt(h.params / 1e6)) * 2 * 2 * 256);
  const need = weights + kv + 300 * MB;
  return {
    id: h.id,
    revision: 'main',
    sha: 'a3f1c0de5b7e2f94c1d8e6b0a9c3f2e1d4b5a6c7',
    gated: h.gated ?? false,
    license: h.license ?? 'apache-2.0',
    card: card(h),
    architecture: h.arch,
    supported: true,
    parameters: h.params,
    files,
    total_size: total,
    variants,
    memory: {
      weights_bytes: weights,
      kv_bytes: kv,
      total_bytes: need,
      machine_bytes: MACHINE,
      context,
      verdict: need < MACHINE * 0.6 ? 'fits' : need < MACHINE * 0.85 ? 'tight' : 'too_big',
    },
  };
}

function matchGlob(glob, path) {
  const re = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(path);
}

function startDownload(body) {
  const h = HUB.find((x) => x.id === body.repo);
  if (!h) throw new ApiError(404, 'not_found', `No model ${body.repo} on the hub.`, { repo: body.repo });
  const include = Array.isArray(body.include) && body.include.length ? body.include : null;
  const files = repoFiles(h)
    .filter((f) => !include || include.some((g) => matchGlob(g, f.path)))
    .map((f) => ({ ...f, done: 0 }));
  const d = {
    id: newId('dl'),
    repo: h.id,
    revision: body.revision ?? 'main',
    include,
    state: 'queued',
    total_bytes: files.reduce((s, f) => s + f.size, 0),
    done_bytes: 0,
    speed_bps: 0,
    eta_s: null,
    files,
    error: null,
    model_id: null,
    created_at: now(),
    updated_at: now(),
  };
  state.downloads.set(d.id, d);
  setTimeout(() => run(d), 150);
  return d;
}

function emitDownload(d) {
  d.updated_at = now();
  broadcast({ type: 'download', download: d });
}

function run(d) {
  if (d.state !== 'queued' && d.state !== 'paused' && d.state !== 'failed' && d.state !== 'cancelled') return;
  d.state = 'running';
  d.error = null;
  emitDownload(d);
  const h = HUB.find((x) => x.id === d.repo);
  const TICK = 200;
  const timer = setInterval(() => {
    if (d.state !== 'running') {
      clearInterval(timer);
      state.timers.delete(timer);
      return;
    }
    if (h.gated && !state.settings.has_hf_token && d.done_bytes > 0) {
      d.state = 'failed';
      d.speed_bps = 0;
      d.eta_s = null;
      d.error = { code: 'unauthorized', message: `Access to ${d.repo} is restricted: accept its license on Hugging Face.`, details: { repo: d.repo } };
      emitDownload(d);
      return;
    }
    let budget = (state.config.download_speed * TICK) / 1000;
    for (const f of d.files) {
      if (budget <= 0) break;
      const take = Math.min(budget, f.size - f.done);
      f.done += take;
      budget -= take;
    }
    d.done_bytes = d.files.reduce((s, f) => s + f.done, 0);
    d.speed_bps = state.config.download_speed * (0.9 + 0.2 * Math.random());
    d.eta_s = (d.total_bytes - d.done_bytes) / d.speed_bps;
    if (d.done_bytes >= d.total_bytes) {
      clearInterval(timer);
      state.timers.delete(timer);
      d.state = 'verifying';
      d.speed_bps = 0;
      d.eta_s = 0;
      emitDownload(d);
      setTimeout(() => {
        if (d.state !== 'verifying') return;
        const m = model({
          id: newId('mdl'),
          name: d.repo.split('/')[1] + (d.include && d.include[0] !== '*' ? `-${d.include[0].replace(/\.gguf$/, '')}` : ''),
          source: { kind: 'hub', repo: d.repo, revision: d.revision },
          architecture: h.arch,
          parameters: h.params,
          quantization: h.quant ? { bits: Number.parseInt(h.quant, 10), group_size: 64 } : null,
          size_bytes: d.total_bytes,
          added_at: now(),
        });
        state.models.set(m.id, m);
        d.state = 'completed';
        d.model_id = m.id;
        emitDownload(d);
        broadcast({ type: 'models_changed' });
      }, 400);
      return;
    }
    emitDownload(d);
  }, TICK);
  state.timers.add(timer);
}

function downloadAction(d, action) {
  switch (action) {
    case 'pause':
      if (['queued', 'running', 'retrying'].includes(d.state)) {
        d.state = 'paused';
        d.speed_bps = 0;
        d.eta_s = null;
      }
      break;
    case 'resume':
      if (d.state === 'paused') setTimeout(() => run(d), 50);
      break;
    case 'cancel':
      if (!['completed', 'failed', 'cancelled'].includes(d.state)) {
        d.state = 'cancelled';
        d.speed_bps = 0;
        d.eta_s = null;
      }
      break;
    case 'retry':
      if (['failed', 'cancelled'].includes(d.state)) {
        d.state = 'queued';
        d.error = null;
        setTimeout(() => run(d), 100);
      }
      break;
    default:
      throw notFound('Action');
  }
  emitDownload(d);
  return d;
}

function estimate(body) {
  const m = state.models.get(body.model_id);
  if (!m) throw notFound('Model');
  // As `cortex serve`: only Hugging Face safetensors models convert.
  if (m.format === 'mlx') throw invalid(`model_id: ${m.name} is already in MLX format; convert from a Hugging Face safetensors model`);
  const params = m.parameters ?? m.size_bytes / 2;
  const bits = body.bits;
  const dtypeBytes = body.dtype === 'float32' ? 4 : 2;
  const output = bits ? Math.round(params * (bits / 8) * (1 + (32 / body.group_size) / bits) + 20 * MB) : Math.round(params * dtypeBytes + 20 * MB);
  return { output_bytes: output, source_bytes: m.size_bytes };
}

function startConversion(body) {
  const src = state.models.get(body.model_id);
  if (!src) throw notFound('Model');
  const est = estimate(body);
  const c = {
    id: newId('cv'),
    model_id: src.id,
    name: body.name || `${src.name}-mlx${body.bits ? `-${body.bits}bit` : ''}`,
    bits: body.bits ?? null,
    group_size: body.group_size ?? 64,
    dtype: body.dtype ?? null,
    state: 'running',
    done_tensors: 0,
    total_tensors: 272,
    done_bytes: 0,
    total_bytes: src.size_bytes,
    estimated_output_bytes: est.output_bytes,
    result_model_id: null,
    error: null,
    created_at: now(),
    updated_at: now(),
  };
  if ([...state.models.values()].some((m) => m.name === c.name)) throw new ApiError(409, 'conflict', `A model named ${c.name} already exists.`);
  state.conversions.set(c.id, c);
  const timer = setInterval(() => {
    if (c.state !== 'running') {
      clearInterval(timer);
      state.timers.delete(timer);
      return;
    }
    c.done_tensors = Math.min(c.total_tensors, c.done_tensors + 34);
    c.done_bytes = Math.round((c.done_tensors / c.total_tensors) * c.total_bytes);
    c.updated_at = now();
    if (c.done_tensors >= c.total_tensors) {
      clearInterval(timer);
      state.timers.delete(timer);
      const m = model({
        id: newId('mdl'),
        name: c.name,
        source: { kind: 'converted', from_model_id: src.id },
        architecture: src.architecture,
        parameters: src.parameters,
        quantization: c.bits ? { bits: c.bits, group_size: c.group_size } : null,
        dtype: c.dtype ?? 'float16',
        size_bytes: c.estimated_output_bytes,
        added_at: now(),
      });
      state.models.set(m.id, m);
      c.state = 'completed';
      c.result_model_id = m.id;
      broadcast({ type: 'conversion', conversion: c });
      broadcast({ type: 'models_changed' });
      return;
    }
    broadcast({ type: 'conversion', conversion: c });
  }, 150);
  state.timers.add(timer);
  return c;
}

// ---- conversations ------------------------------------------------------------------------------

function getConv(id) {
  const c = state.conversations.get(id);
  if (!c) throw notFound('Conversation');
  return c;
}

function message(partial) {
  return { id: newId('msg'), parent_id: null, role: 'user', content: '', created_at: now(), model_id: null, stats: null, error: null, ...partial };
}

function pathTo(convId, leafId) {
  const byId = new Map(state.messages.get(convId).map((m) => [m.id, m]));
  const path = [];
  let cur = leafId ? byId.get(leafId) : undefined;
  while (cur) {
    path.unshift(cur);
    cur = cur.parent_id ? byId.get(cur.parent_id) : undefined;
  }
  return path;
}

function pickReply(userText, siblingsCount) {
  const t = userText.toLowerCase();
  if (t.includes('xss')) return XSS_REPLY;
  if (t.includes('long')) return longReply();
  return ANSWERS[siblingsCount % ANSWERS.length];
}

/** Streams a reply as the child of `parent` (a user message). */
function generate(res, conv, parent, userMessage) {
  const msgs = state.messages.get(conv.id);
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  const write = (event) => res.write(`data: ${JSON.stringify(event)}\n\n`);
  if (userMessage) write({ type: 'user_message', message: userMessage });

  const fail = state.config.fail_next;
  if (fail) {
    state.config.fail_next = null;
    setTimeout(() => {
      write({ type: 'error', error: { code: fail, message: fail === 'model_load_failed' ? 'The model failed to load: config.json is missing "hidden_size".' : `Failed (${fail}).` }, message: null });
      res.end();
    }, 200);
    return;
  }

  const siblingsCount = msgs.filter((m) => m.parent_id === parent.id && m.role === 'assistant').length;
  const tokens = state.config.reply_tokens ? benchTokens(state.config.reply_tokens) : tokenize(pickReply(parent.content, siblingsCount));
  const modelId = conv.model_id ?? 'mdl_smollm2';
  const assistant = message({ parent_id: parent.id, role: 'assistant', model_id: modelId });
  msgs.push(assistant);
  conv.current_leaf_id = assistant.id;
  conv.updated_at = now();
  const m = state.models.get(modelId);
  if (m) {
    m.loaded = true;
    m.last_used_at = now();
  }
  const started = now();
  let firstTokenAt = null;
  let i = 0;
  let finished = false;
  const promptTokens = pathTo(conv.id, parent.id).reduce((s, x) => s + Math.ceil(x.content.length / 4), 12);

  const finish = (reason, stream = true) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    state.active.delete(conv.id);
    const elapsed = Math.max(1, now() - (firstTokenAt ?? started));
    assistant.stats = {
      prompt_tokens: promptTokens,
      completion_tokens: i,
      cached_tokens: Math.max(0, promptTokens - Math.ceil(parent.content.length / 4) - 12),
      ttft_ms: (firstTokenAt ?? now()) - started,
      tokens_per_s: i > 1 ? (i - 1) / (elapsed / 1000) : 0,
      finish_reason: reason,
    };
    conv.updated_at = now();
    if (stream && !res.writableEnded) {
      write({ type: 'done', message: assistant });
      res.end();
    }
  };

  let timer = null;
  const step = () => {
    if (finished) return;
    if (i >= tokens.length) return finish('stop');
    const piece = tokens[i++];
    if (firstTokenAt === null) firstTokenAt = now();
    assistant.content += piece;
    write({ type: 'delta', text: piece });
    if (state.config.delay_ms > 0) timer = setTimeout(step, state.config.delay_ms);
    else setImmediate(step); // full speed (finish() clears no immediate; `finished` stops it)
  };
  state.active.set(conv.id, { stop: () => finish('cancelled') });
  res.on('close', () => finish('cancelled', false)); // the client went away: save what we have
  setTimeout(() => {
    if (finished) return;
    write({ type: 'assistant_started', message: { ...assistant } });
    timer = setTimeout(step, 120);
  }, 150);
}

// ---- router -------------------------------------------------------------------------------------

function checkApiKey(req) {
  const key = state.config.api_key;
  if (!key || req.method === 'OPTIONS') return;
  const given = (req.headers.authorization ?? '').startsWith('Bearer ') ? req.headers.authorization.slice(7).trim() : null;
  if (given === key) return;
  throw new ApiError(401, 'invalid_api_key', given === null ? 'missing API key: send the header Authorization: Bearer <key>' : 'invalid API key');
}

async function handleApi(req, res, url) {
  checkApiKey(req);
  const method = req.method ?? 'GET';
  const p = url.pathname.replace(/\/+$/, '');
  const parts = p.split('/').slice(2).map(decodeURIComponent); // after /api
  const [a, b, c] = parts;
  const changing = method !== 'GET' && method !== 'HEAD';
  if (changing && req.headers.origin && req.headers.origin !== `http://${req.headers.host}`) {
    throw new ApiError(403, 'forbidden_origin', 'Requests from another origin are refused.');
  }

  if (a === 'system' && method === 'GET') {
    return send(res, 200, {
      version: '0.1.0-mock',
      memory_bytes: MACHINE,
      device: 'cpu',
      default_model_id: 'mdl_smollm2',
      models_dir: state.settings.models_dir,
      hf_endpoint: state.settings.hf_endpoint,
      has_hf_token: state.settings.has_hf_token,
      library_only: state.config.library_only,
    });
  }
  if (state.config.library_only && refusedInLibraryMode(method, parts)) {
    throw new ApiError(403, 'forbidden', 'this server serves its library only: downloads, imports, conversions and settings changes are turned off (start it with --allow-pulls to allow them)');
  }
  if (a === 'settings') {
    if (method === 'GET') return send(res, 200, state.settings);
    if (method === 'PUT') {
      const body = await readJson(req);
      for (const k of ['models_dir', 'hf_endpoint', 'kv_memory_mb', 'theme']) if (k in body) state.settings[k] = body[k];
      if ('hf_token' in body) {
        state.settings.has_hf_token = !!body.hf_token;
        state.settings.hf_token_storage = body.hf_token ? 'file' : null;
      }
      return send(res, 200, state.settings);
    }
  }
  if (a === 'events' && method === 'GET') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    res.write(': connected\n\n');
    state.clients.add(res);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    res.on('close', () => {
      clearInterval(ping);
      state.clients.delete(res);
    });
    return;
  }
  if (a === 'models') {
    if (!b && method === 'GET') return send(res, 200, { models: [...state.models.values()], total_size_bytes: totalSize() });
    if (b === 'import' && method === 'POST') {
      const body = await readJson(req);
      const path = String(body.path ?? '').trim();
      if (!path) throw invalid('A path is needed.');
      if (!path.endsWith('.gguf') && !path.includes('/')) throw new ApiError(404, 'not_found', `Nothing at ${path}.`);
      const isGguf = path.endsWith('.gguf');
      const m = model({
        id: newId('mdl'),
        name: body.name || path.split('/').filter(Boolean).pop().replace(/\.gguf$/, ''),
        source: isGguf ? { kind: 'gguf', file: path } : { kind: 'folder', path },
        quantization: isGguf ? { bits: 4, group_size: 32 } : null,
        size_bytes: 380 * MB,
        added_at: now(),
      });
      state.models.set(m.id, m);
      broadcast({ type: 'models_changed' });
      return send(res, 200, m);
    }
    const m = state.models.get(b);
    if (!m) throw notFound('Model');
    if (!c && method === 'GET') return send(res, 200, m);
    if (!c && method === 'PATCH') {
      const body = await readJson(req);
      if (body.name && [...state.models.values()].some((x) => x.name === body.name && x.id !== m.id)) throw new ApiError(409, 'conflict', 'That name is taken.');
      if (body.name) m.name = body.name;
      if (body.settings) Object.assign(m.settings, body.settings);
      return send(res, 200, m);
    }
    if (!c && method === 'DELETE') {
      state.models.delete(m.id);
      broadcast({ type: 'models_changed' });
      return send(res, 200, { freed_bytes: m.size_bytes });
    }
    if (c === 'load' && method === 'POST') {
      await new Promise((r) => setTimeout(r, 300));
      for (const x of state.models.values()) x.loaded = false;
      m.loaded = true;
      m.last_used_at = now();
      broadcast({ type: 'models_changed' });
      return send(res, 200, m);
    }
    if (c === 'unload' && method === 'POST') {
      m.loaded = false;
      broadcast({ type: 'models_changed' });
      return send(res, 200, m);
    }
  }
  if (a === 'hub') {
    if (b === 'search' && method === 'GET') return send(res, 200, searchHub(url.searchParams));
    if (b === 'model' && method === 'GET') return send(res, 200, hubModel(url.searchParams));
  }
  if (a === 'downloads') {
    if (!b && method === 'GET') return send(res, 200, { downloads: [...state.downloads.values()] });
    if (!b && method === 'POST') return send(res, 200, startDownload(await readJson(req)));
    const d = state.downloads.get(b);
    if (!d) throw notFound('Download');
    if (!c && method === 'DELETE') {
      if (!['completed', 'failed', 'cancelled'].includes(d.state)) throw new ApiError(409, 'conflict', 'Cancel the download first.');
      state.downloads.delete(d.id);
      return send(res, 200, {});
    }
    if (c && method === 'POST') return send(res, 200, downloadAction(d, c));
  }
  if (a === 'convert') {
    if (b === 'estimate' && method === 'POST') return send(res, 200, estimate(await readJson(req)));
    if (!b && method === 'POST') return send(res, 200, startConversion(await readJson(req)));
  }
  if (a === 'conversions') {
    if (!b && method === 'GET') return send(res, 200, { conversions: [...state.conversions.values()] });
    const cv = state.conversions.get(b);
    if (!cv) throw notFound('Conversion');
    if (c === 'cancel' && method === 'POST') {
      if (cv.state === 'running') cv.state = 'cancelled';
      cv.updated_at = now();
      broadcast({ type: 'conversion', conversion: cv });
      return send(res, 200, cv);
    }
  }
  if (a === 'conversations') {
    if (!b && method === 'GET') {
      const q = (url.searchParams.get('q') ?? '').toLowerCase();
      const list = [...state.conversations.values()]
        .filter((cv) => !q || cv.title.toLowerCase().includes(q) || state.messages.get(cv.id).some((m) => m.content.toLowerCase().includes(q)))
        .sort((x, y) => y.updated_at - x.updated_at);
      return send(res, 200, { conversations: list });
    }
    if (!b && method === 'POST') {
      const body = await readJson(req);
      const cv = {
        id: newId('cnv'),
        title: body.title || 'New chat',
        model_id: body.model_id ?? null,
        system_prompt: body.system_prompt ?? null,
        settings: defaultSettings(),
        current_leaf_id: null,
        created_at: now(),
        updated_at: now(),
      };
      state.conversations.set(cv.id, cv);
      state.messages.set(cv.id, []);
      return send(res, 200, cv);
    }
    const cv = getConv(b);
    if (!c && method === 'GET') return send(res, 200, { conversation: cv, messages: state.messages.get(cv.id) });
    if (!c && method === 'PATCH') {
      const body = await readJson(req);
      for (const k of ['title', 'model_id', 'system_prompt']) if (k in body) cv[k] = body[k];
      if (body.settings) cv.settings = { ...cv.settings, ...body.settings };
      if ('current_leaf_id' in body) {
        if (body.current_leaf_id && !state.messages.get(cv.id).some((m) => m.id === body.current_leaf_id)) throw invalid('No such message.');
        cv.current_leaf_id = body.current_leaf_id;
      }
      cv.updated_at = now();
      return send(res, 200, cv);
    }
    if (!c && method === 'DELETE') {
      state.active.get(cv.id)?.stop();
      state.conversations.delete(cv.id);
      state.messages.delete(cv.id);
      return send(res, 200, {});
    }
    if (c === 'messages' && method === 'POST') {
      const body = await readJson(req);
      if (typeof body.content !== 'string' || !body.content.trim()) throw invalid('The message is empty.');
      if (state.active.has(cv.id)) throw new ApiError(409, 'busy', 'A reply is already being written in this conversation.');
      const msgs = state.messages.get(cv.id);
      if (body.parent_id && !msgs.some((m) => m.id === body.parent_id)) throw invalid('No such parent message.');
      const user = message({ parent_id: body.parent_id ?? null, role: 'user', content: body.content });
      msgs.push(user);
      cv.current_leaf_id = user.id;
      cv.updated_at = now();
      return generate(res, cv, user, user);
    }
    if (c === 'regenerate' && method === 'POST') {
      const body = await readJson(req);
      const msgs = state.messages.get(cv.id);
      const target = msgs.find((m) => m.id === body.message_id);
      if (!target) throw invalid('No such message.');
      if (state.active.has(cv.id)) throw new ApiError(409, 'busy', 'A reply is already being written in this conversation.');
      // An assistant message: a sibling for its user message. A user message: retry its reply.
      const parent = target.role === 'assistant' ? msgs.find((m) => m.id === target.parent_id) : target;
      if (!parent || parent.role !== 'user') throw invalid('Nothing to regenerate.');
      return generate(res, cv, parent, null);
    }
    if (c === 'stop' && method === 'POST') {
      state.active.get(cv.id)?.stop();
      return send(res, 200, {});
    }
  }
  throw notFound(`${method} ${url.pathname}`);
}

/** The requests `cortex serve --library-only` refuses (crates/server app_api::refused_in_library_mode). */
function refusedInLibraryMode(method, parts) {
  const [a, b, c] = parts;
  return (
    ((method === 'PUT' || method === 'PATCH') && a === 'settings' && parts.length === 1) ||
    (method === 'POST' && a === 'models' && b === 'import' && parts.length === 2) ||
    (method === 'POST' && a === 'downloads' && parts.length === 1) ||
    (method === 'POST' && a === 'downloads' && c === 'resume' && parts.length === 3) ||
    (method === 'POST' && a === 'convert' && parts.length === 1)
  );
}

async function handleMock(req, res, url) {
  if (url.pathname === '/__mock/reset' && req.method === 'POST') {
    reset();
    return send(res, 200, { ok: true });
  }
  if (url.pathname === '/__mock/config' && req.method === 'POST') {
    Object.assign(state.config, await readJson(req));
    return send(res, 200, state.config);
  }
  if (url.pathname === '/__mock/seed' && req.method === 'POST') {
    const body = await readJson(req);
    return send(res, 200, { conversation_id: seedConversation(Number(body.messages ?? 1000), body.title) });
  }
  throw notFound('Mock control');
}

/** One conversation of n alternating user/assistant messages, each a few Markdown lines. */
function seedConversation(n, title = `Seeded (${n} messages)`) {
  const t0 = now() - n * 60_000;
  const cv = { id: newId('cnv'), title, model_id: 'mdl_smollm2', system_prompt: null, settings: defaultSettings(), current_leaf_id: null, created_at: t0, updated_at: now() };
  const msgs = [];
  let parent = null;
  for (let i = 0; i < n; i++) {
    const user = i % 2 === 0;
    const m = message({
      parent_id: parent,
      role: user ? 'user' : 'assistant',
      model_id: user ? null : 'mdl_smollm2',
      created_at: t0 + i * 60_000,
      content: user
        ? `Question ${i / 2 + 1}: how does step ${i} work?`
        : `Answer ${(i + 1) / 2}: it works in **two** steps.\n\n- first, \`parse(input)\`\n- then [the docs](https://example.com) say to \`run()\`.\n\n\`\`\`js\nconst x = ${i};\n\`\`\``,
    });
    msgs.push(m);
    parent = m.id;
  }
  cv.current_leaf_id = parent;
  state.conversations.set(cv.id, cv);
  state.messages.set(cv.id, msgs);
  return cv.id;
}

reset();

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
  try {
    if (url.pathname.startsWith('/api/')) return await handleApi(req, res, url);
    if (url.pathname.startsWith('/__mock/')) return await handleMock(req, res, url);
    return serveStatic(req, res, url.pathname);
  } catch (e) {
    const status = e instanceof ApiError ? e.status : 500;
    const body = e instanceof ApiError ? { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } : { code: 'internal', message: String(e?.message ?? e) };
    // the key check answers like cortex serve's guard: OpenAI-shaped, with WWW-Authenticate
    if (status === 401 && !res.headersSent) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      return send(res, 401, { error: { message: e.message, type: 'authentication_error', code: 'invalid_api_key' } });
    }
    if (!res.headersSent) send(res, status, { error: body });
    else res.end();
  }
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  console.log(`mock server listening on http://${HOST}:${port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 500).unref());
