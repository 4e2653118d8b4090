// What the page tests and the scripts that drive the page in headless Chromium share: the
// page served by `var serve` on a free port, Chromium with WebGPU enabled, and command-line
// options.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

// Starts `var serve` on `root` and resolves to { server, base } once it prints its address.
export async function servePage(varBin, root) {
  const server = spawn(varBin, ['serve', '--port', '0', '--root', root], { stdio: ['ignore', 'pipe', 'inherit'] });
  const base = await new Promise((resolve, reject) => {
    server.stdout.on('data', (chunk) => {
      const m = String(chunk).match(/(http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) resolve(m[1]);
    });
    server.on('exit', (code) => reject(new Error(`var serve exited with ${code}`)));
  });
  return { server, base };
}

// Headless system Chromium ($CHROMIUM) with WebGPU on (SwiftShader where there is no GPU).
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

// `--name value` from `args`, or `fallback`.
export function option(args, name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}

// A stand-in for the Hugging Face hub on its own origin (so CORS is exercised): serves the
// files of `dir` under /ranged/ (single `Range: bytes=START-END` requests answered with 206,
// Content-Range exposed, as the hub's CDN does) and under /plain/ (Range ignored: always the
// whole file with 200), under /slow/ (as /ranged/, each answer 200 ms late: time to cancel),
// under /html/ (a 200 web page, as a login wall answers), under /short/ (ranges after the first
// byte answered with half their bytes), anything else 404;
// `/catalog.json` is `catalog(base)`. Every request
// is recorded in `requests` as 'METHOD path'. Resolves to { server, base, requests }.
export async function serveHub(dir, catalog) {
  const { createServer } = await import('node:http');
  const { statSync, createReadStream } = await import('node:fs');
  const { join, basename } = await import('node:path');
  const requests = [];
  let base = '';
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length');
    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Headers', 'Range');
      res.writeHead(204).end();
      return;
    }
    const [, mode, name] = req.url.split('?')[0].split('/');
    if (mode === 'catalog.json') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(catalog(base)));
      return;
    }
    const path = join(dir, basename(name || ''));
    let size;
    try {
      size = statSync(path).size;
    } catch (_) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    if (mode === 'html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Sign in</title>');
      return;
    }
    if (mode === 'short') {
      // A range answered with half the bytes asked for (a transfer cut short, said honestly).
      const r = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range || '');
      if (r && Number(r[1]) > 0) {
        const start = Number(r[1]);
        const end = Math.min(Number(r[2]), size - 1);
        const half = start + Math.floor((end - start) / 2);
        res.writeHead(206, { 'Content-Type': 'application/octet-stream', 'Content-Length': half - start + 1, 'Content-Range': `bytes ${start}-${half}/${size}` });
        createReadStream(path, { start, end: half }).pipe(res);
        return;
      }
      answer('ranged');
      return;
    }
    if (mode === 'slow') {
      setTimeout(() => answer('ranged'), 200);
      return;
    }
    answer(mode);
    function answer(as) {
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range || '');
    if (as === 'ranged' && range) {
      const start = Number(range[1]);
      const end = Math.min(Number(range[2]), size - 1);
      res.writeHead(206, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': end - start + 1,
        'Content-Range': `bytes ${start}-${end}/${size}`,
      });
      createReadStream(path, { start, end }).pipe(res);
    } else if (as === 'ranged' || as === 'plain') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size });
      createReadStream(path).pipe(res);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
    }
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}/`;
  return { server, base, requests };
}

// The float32 values of tensor `name` in a safetensors file's bytes.
export function safetensorsF32(bytes, name) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const t = header[name];
  if (!t || t.dtype !== 'F32') throw new Error(`no F32 tensor ${name}`);
  const [start, end] = t.data_offsets.map((o) => o + 8 + n);
  const copy = Uint8Array.prototype.slice.call(bytes, start, end);
  return { shape: t.shape, values: new Float32Array(copy.buffer) };
}

// Resident memory of a process and all its descendants, in bytes (Linux /proc).
export function treeRss(pid) {
  const children = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(entry));
    } catch (_) { /* the process ended */ }
  }
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      const kb = Number((status.match(/VmRSS:\s+(\d+)/) || [0, 0])[1]);
      total += kb * 1024;
    } catch (_) { /* gone */ }
    stack.push(...(children.get(p) || []));
  }
  return total;
}
