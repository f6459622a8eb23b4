// Prints the gzip size of the built bundle: what the first screen loads (index.html's entry and its
// static imports) and the total. `npm run size` after `npm run build`.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';

const dist = new URL('../dist/', import.meta.url).pathname;
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.(js|css|html)$/.test(name)) files.push(p);
  }
})(dist);

const gz = (p) => gzipSync(readFileSync(p), { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

// First screen: index.html, plus the scripts/styles it references and what they import statically.
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const first = new Set([join(dist, 'index.html')]);
// The browser's service implementation is a dynamic import, but every start loads it.
for (const p of files) if (/\/http-[\w-]+\.js$/.test(p)) first.add(p);
const queue = [...html.matchAll(/(?:src|href)="\/?([^"]+\.(?:js|css))"/g)].map((m) => join(dist, m[1]));
for (const p of [...first]) if (p.endsWith('.js')) queue.push(p), first.delete(p);
while (queue.length) {
  const p = queue.pop();
  if (first.has(p)) continue;
  first.add(p);
  if (!p.endsWith('.js')) continue;
  const src = readFileSync(p, 'utf8');
  // static imports only: `import ... from "./x.js"` / `import "./x.js"` (not import("./x.js"))
  for (const m of src.matchAll(/(?:^|[;\n}])\s*import\s*(?:[\w*{}\s,$]+from\s*)?["']\.\/([^"']+)["']/g)) {
    queue.push(join(p, '..', m[1]));
  }
}

let total = 0;
let firstTotal = 0;
const rows = files.map((p) => {
  const size = gz(p);
  total += size;
  if (first.has(p)) firstTotal += size;
  return [relative(dist, p), size, first.has(p)];
});
rows.sort((a, b) => b[1] - a[1]);
for (const [name, size, isFirst] of rows) console.log(`${isFirst ? '*' : ' '} ${kb(size).padStart(9)}  ${name}`);
console.log(`gzip size: first screen ${kb(firstTotal)} (marked *), total ${kb(total)}`);
