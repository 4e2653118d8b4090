#!/usr/bin/env node
// The official-scale proof without the official files: writes a random-weight VAR-d16 and
// 256 px VQ-VAE as PyTorch checkpoints with the official key names and shapes
// (`var random-checkpoint`), converts them like the real ones (`var convert --precision int8`,
// 64 MiB shards), then loads the model in headless Chromium through the page and generates
// one image, reporting load time, generation time per scale and the browser's peak memory.
//
//   node scripts/d16-in-browser.mjs [--backend webgpu|cpu] [--class 207] [--work DIR] [--load-only]
//
// Slow where WebGPU is a CPU emulation (SwiftShader): minutes per image. Needs the page built
// (scripts/build-web.sh). The model goes to www/models/var-d16-random/ (gitignored).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { servePage, launchChromium, option as harnessOption, treeRss } from '../tests/e2e/harness.mjs';
import { homedir, tmpdir } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => harnessOption(args, name, fallback);
const backend = option('backend', 'webgpu');
const label = option('class', '207');
const work = option('work', join(tmpdir(), 'var-d16-random'));
// Stop once the model is ready: load time and memory without the (long) generation.
const loadOnly = args.includes('--load-only');
const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'var-web', 'target');
const varBin = process.env.VAR_BIN || join(targetDir, 'debug', 'var');
const model = join(root, 'www', 'models', 'var-d16-random');
const HOUR = 3600 * 1000;

function run(cmd, argv) {
  console.error(`$ ${cmd} ${argv.join(' ')}`);
  const start = Date.now();
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${argv[0]} failed (exit ${r.status})`);
  return (Date.now() - start) / 1000;
}

const report = { backend, class: Number(label) };
if (!existsSync(join(work, 'var_d16.pth'))) {
  report.checkpoint_s = run(varBin, ['random-checkpoint', '--depth', '16', '--out', work]);
}
if (!existsSync(join(model, 'manifest.json'))) {
  rmSync(model, { recursive: true, force: true });
  report.convert_s = run(varBin, ['convert', '--vae', join(work, 'vae_ch160v4096z32.pth'),
    '--var', join(work, 'var_d16.pth'), '--precision', 'int8', '--out', model]);
}
const manifest = JSON.parse(readFileSync(join(model, 'manifest.json'), 'utf8'));
report.shards = manifest.shards.length;
report.download_mib = manifest.shards.reduce((a, s) => a + s.bytes, 0) / 2 ** 20;

const { server, base } = await servePage(varBin, join(root, 'www'));
let browser;
let peak = 0;
let sampler;
try {
  browser = await launchChromium();
  // Chromium runs as a child of this process: its memory is this process tree's, less this
  // process and the server.
  const browserRss = () => treeRss(process.pid) - process.memoryUsage().rss - treeRss(server.pid);
  sampler = setInterval(() => { peak = Math.max(peak, browserRss()); }, 500);
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('404')) console.error(`[page] ${m.text()}`); });
  // What the page says, every 30 s, on stderr: a long run shows where it is.
  const progress = setInterval(async () => {
    const text = await page.textContent('#status').catch(() => '');
    const files = await page.textContent('#progress-text').catch(() => '');
    console.error(`[${new Date().toISOString().slice(11, 19)}] ${text} ${files} (browser RSS ${(peak / 2 ** 20).toFixed(0)} MiB peak)`);
  }, 30000);
  page.on('close', () => clearInterval(progress));
  const query = `&backend=${backend}`;
  let start = Date.now();
  await page.goto(`${base}?model=models/var-d16-random/${query}`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: HOUR, polling: 1000 });
  report.load_s = (Date.now() - start) / 1000;
  console.error(`loaded in ${report.load_s.toFixed(1)} s`);
  report.status = await page.textContent('#status');
  report.budget = await page.textContent('#budget');
  if ((await page.locator('#status').getAttribute('data-state')) !== 'ready') throw new Error(report.status);
  report.backend_used = await page.locator('#status').getAttribute('data-backend');
  report.peak_rss_mib_after_load = peak / 2 ** 20;
  if (!loadOnly) {
    await page.selectOption('#class-select', label);
    start = Date.now();
    await page.click('#generate');
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: 3 * HOUR, polling: 1000 });
    report.generate_s = (Date.now() - start) / 1000;
    report.final_status = await page.textContent('#status');
    report.scales = await page.locator('#thumbs li').allTextContents();
    const size = await page.evaluate(() => document.getElementById('output').width);
    report.image_px = size;
    report.peak_rss_mib = peak / 2 ** 20;
  }
  clearInterval(progress);
  console.log(JSON.stringify(report, null, 1));
} catch (e) {
  report.error = e.message ?? String(e);
  report.peak_rss_mib = peak / 2 ** 20;
  console.log(JSON.stringify(report, null, 1));
  process.exitCode = 1;
} finally {
  clearInterval(sampler);
  await browser?.close();
  server.kill();
}
