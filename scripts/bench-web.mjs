#!/usr/bin/env node
// Drives www/bench.html in headless Chromium (WebGPU on whatever adapter Chromium finds:
// SwiftShader on machines without a GPU) and prints the side-by-side table.
//
//   node scripts/bench-web.mjs [--model d16|models/fashion-mnist/] [--backend webgpu,cpu]
//        [--precision f32,int8] [--runs 3] [--top-k 900] [--no-decode] [--json out.json]
//
// Needs the page built (scripts/build-web.sh) and VAR_BIN (default: the cargo target's
// debug/var) to serve it. playwright-core comes from tests/e2e (scripts/setup.sh --web).
import { writeFileSync, renameSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { servePage, launchChromium, option as harnessOption } from '../tests/e2e/harness.mjs';
import { homedir } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const args = process.argv.slice(2);
const option = (name, fallback) => harnessOption(args, name, fallback);
const valued = ['--model', '--backend', '--precision', '--runs', '--top-k', '--json', '--timeout'];
for (let i = 0; i < args.length; i += 1) {
  if (valued.includes(args[i]) && i + 1 < args.length) i += 1;
  else if (args[i] !== '--no-decode') {
    console.error(`unknown or incomplete option '${args[i]}'; options: ${valued.join(' ')} --no-decode`);
    process.exit(2);
  }
}
const query = new URLSearchParams({
  model: option('model', 'models/fashion-mnist/'),
  backend: option('backend', 'webgpu'),
  precision: option('precision', 'f32,int8'),
  runs: option('runs', '3'),
  topk: option('top-k', '900'),
  decode: args.includes('--no-decode') ? '0' : '1',
});
const timeoutMs = Number(option('timeout', '3600')) * 1000;
const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'var-web', 'target');
const varBin = process.env.VAR_BIN || join(targetDir, 'debug', 'var');
if (!existsSync(varBin)) {
  console.error(`no var binary at ${varBin}: run scripts/build-web.sh first (or set VAR_BIN)`);
  process.exit(1);
}
if (!existsSync(join(root, 'www', 'pkg', 'var_web.js'))) {
  console.error('www/pkg is missing: run scripts/build-web.sh first');
  process.exit(1);
}

const { server, base } = await servePage(varBin, join(root, 'www'));
let browser;
try {
  browser = await launchChromium();
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page] ${m.text()}`); });
  await page.goto(`${base}bench.html?${query}`);
  const adapter = await page.evaluate(async () => {
    const a = await navigator.gpu?.requestAdapter();
    if (!a) return 'no WebGPU adapter';
    const info = a.info ?? {};
    return [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unnamed adapter';
  });
  await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('results').dataset.state),
    null, { timeout: timeoutMs, polling: 500 });
  const state = await page.locator('#results').getAttribute('data-state');
  if (state !== 'done') throw new Error(await page.locator('#status').textContent());
  const reports = JSON.parse(await page.locator('#results').textContent());
  const rows = await page.locator('#bench-table tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  console.log(`${reports[0].model} in ${await browser.version()} on the WebGPU adapter "${adapter}"; median of ${reports[0].runs} timed runs after a warm-up`);
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '));
  const json = option('json');
  if (json) {
    writeFileSync(`${json}.tmp`, JSON.stringify({ adapter, browser: await browser.version(), reports }, null, 1));
    renameSync(`${json}.tmp`, json);
    console.log(`wrote ${json}`);
  }
} catch (e) {
  console.error(`bench-web: ${e.message ?? e}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  server.kill();
}
