// Prints the gzip size of what the overview loads on first visit:
// index.html, the entry script and stylesheet, the overview chunk and every
// chunk they import statically. Usage: npm run build && npm run size
import { readFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, basename } from 'node:path';

const dist = new URL('../dist/', import.meta.url).pathname;
const assets = join(dist, 'assets');
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const files = new Set(['index.html']);
const queue = [];
for (const m of html.matchAll(/(?:src|href)="\/assets\/([^"]+)"/g)) queue.push(m[1]);
const overview = readdirSync(assets).find((f) => /^overview-.*\.js$/.test(f));
if (!overview) throw new Error('no overview chunk in dist/assets');
queue.push(overview);
while (queue.length) {
  const name = queue.shift();
  if (files.has(`assets/${name}`)) continue;
  files.add(`assets/${name}`);
  if (!name.endsWith('.js')) continue;
  const text = readFileSync(join(assets, name), 'utf8');
  // static imports only: `import{...}from"./x.js"` / `import"./x.js"`
  for (const m of text.matchAll(/import\s*(?:[\w*{}\s,$]+from\s*)?["']\.\/([^"']+)["']/g)) queue.push(basename(m[1]));
}
let total = 0;
for (const f of files) {
  const raw = readFileSync(join(dist, f));
  const gz = gzipSync(raw, { level: 9 }).length;
  total += gz;
  console.log(`${String(gz).padStart(7)} B gzip  ${String(raw.length).padStart(7)} B raw  ${f}`);
}
console.log(`${String(total).padStart(7)} B gzip total for the overview's first load (${(total / 1024).toFixed(1)} KiB; budget 200 KB)`);
if (total > 200_000) process.exit(1);
