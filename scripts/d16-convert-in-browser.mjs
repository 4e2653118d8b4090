#!/usr/bin/env node
// The page's official-model path at full scale, without the official files: writes a
// random-weight VAR-d16 and VQ-VAE as PyTorch checkpoints with the official names and shapes
// (`var random-checkpoint`), serves them from a stand-in hub on a second origin (Range
// honoured, as the hub's CDN does), and has the page convert them (?model=var-d16&hub=…),
// confirm, keep them in storage and load them. Reports download + conversion time, the
// browser's peak memory, the size kept, whether the fingerprint equals
// `var convert --precision int8` of the same files, and a reload with no request to the hub.
//
//   node scripts/d16-convert-in-browser.mjs [--backend webgpu|cpu] [--work DIR]
//
// A benchmark, not a test: minutes on our 2-core machines. Needs the page built
// (scripts/build-web.sh) and the CLI (cargo test builds it).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir, tmpdir } from 'node:os';
import { servePage, serveHub, launchChromium, option as harnessOption, treeRss } from '../tests/e2e/harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => harnessOption(args, name, fallback);
const backend = option('backend', 'webgpu');
const work = option('work', join(tmpdir(), 'var-d16-random'));
const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'var-web', 'target');
const varBin = process.env.VAR_BIN || join(targetDir, 'debug', 'var');
const HOUR = 3600 * 1000;

function run(cmd, argv) {
  console.error(`$ ${cmd} ${argv.join(' ')}`);
  const start = Date.now();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${argv[0]} failed (exit ${r.status})`);
  return { seconds: (Date.now() - start) / 1000, stdout: r.stdout };
}

const report = { backend };
if (!existsSync(join(work, 'var_d16.pth'))) {
  report.checkpoint_s = run(varBin, ['random-checkpoint', '--depth', '16', '--out', work]).seconds;
}
const cliDir = mkdtempSync(join(tmpdir(), 'var-d16-cli-'));
const cli = run(varBin, ['convert', '--vae', join(work, 'vae_ch160v4096z32.pth'), '--var', join(work, 'var_d16.pth'),
  '--precision', 'int8', '--out', join(cliDir, 'var-d16')]);
report.cli_convert_s = cli.seconds;
report.cli_fingerprint = /fingerprint ([0-9a-f]{64})/.exec(cli.stdout)[1];
rmSync(cliDir, { recursive: true, force: true });

const page0 = await servePage(varBin, join(root, 'www'));
const hub = await serveHub(work, () => ({}));
let browser;
let peak = 0;
let sampler;
try {
  browser = await launchChromium();
  const browserRss = () => treeRss(process.pid) - process.memoryUsage().rss - treeRss(page0.server.pid);
  sampler = setInterval(() => { peak = Math.max(peak, browserRss()); }, 500);
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page] ${m.text()}`); });
  const progress = setInterval(async () => {
    const text = await page.textContent('#status').catch(() => '');
    const files = await page.textContent('#progress-text').catch(() => '');
    console.error(`[${new Date().toISOString().slice(11, 19)}] ${text} ${files} (browser RSS ${(peak / 2 ** 20).toFixed(0)} MiB peak)`);
  }, 30000);
  const query = `?model=var-d16&hub=${encodeURIComponent(`${hub.base}ranged/`)}&backend=${backend}`;
  await page.goto(`${page0.base}${query}`);
  const waitState = (wanted, timeout) => page.waitForFunction(
    (w) => w.includes(document.getElementById('status').dataset.state), wanted, { timeout, polling: 1000 });
  await waitState(['confirm', 'error'], 60000);
  report.prompt = await page.textContent('#source-prompt-text');
  const start = Date.now();
  await page.click('#confirm-source');
  await waitState(['ready', 'error'], 2 * HOUR);
  report.convert_and_load_s = (Date.now() - start) / 1000;
  report.status = await page.textContent('#status');
  if ((await page.locator('#status').getAttribute('data-state')) !== 'ready') throw new Error(report.status);
  report.backend_used = await page.locator('#status').getAttribute('data-backend');
  report.budget = await page.textContent('#budget');
  report.peak_rss_mib = peak / 2 ** 20;
  report.fingerprint = await page.locator('#model-info').getAttribute('data-fingerprint');
  report.model_info = await page.textContent('#model-info');
  report.fingerprint_equals_cli = report.fingerprint === report.cli_fingerprint;
  report.storage = await page.textContent('#storage-list');
  report.range_requests = hub.requests.filter((r) => r.includes('.pth')).length;

  hub.requests.length = 0;
  const reload = Date.now();
  await page.reload();
  await waitState(['ready', 'error'], HOUR);
  report.reload_s = (Date.now() - reload) / 1000;
  report.reload_status = await page.textContent('#status');
  report.reload_hub_requests = hub.requests.filter((r) => r.includes('.pth')).length;
  clearInterval(progress);
  console.log(JSON.stringify(report, null, 1));
  if (!report.fingerprint_equals_cli || report.reload_hub_requests) process.exitCode = 1;
} catch (e) {
  report.error = e.message ?? String(e);
  report.peak_rss_mib = peak / 2 ** 20;
  console.log(JSON.stringify(report, null, 1));
  process.exitCode = 1;
} finally {
  clearInterval(sampler);
  await browser?.close();
  page0.server.kill();
  hub.server.close();
}
