#!/usr/bin/env node
// Times batches in the page itself (www/index.html, what a person runs): one warm-up run, then
// rounds of 1, 4, 9 and 16 images taken in turn, so that a slow spell of the machine touches
// every size alike. Prints the median total per batch size, the time per image and the ratio
// to one image.
//
//   node scripts/bench-batch.mjs [--backend cpu|webgpu] [--rounds 5] [--model fashion-mnist]
//        [--previews worker|inline]
//
// --previews inline keeps one image's previews in the inference worker (the page's
// `?previews=inline`) instead of the preview worker, for a side-by-side run.
//
// Needs the page built (scripts/build-web.sh) and VAR_BIN (default: the cargo target's
// debug/var) to serve it; playwright-core comes from tests/e2e (scripts/setup.sh --web).
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';
import { servePage, launchChromium, option as harnessOption } from '../tests/e2e/harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const valued = ['--backend', '--rounds', '--model', '--previews'];
for (let i = 0; i < args.length; i += 1) {
  if (valued.includes(args[i]) && i + 1 < args.length) i += 1;
  else {
    console.error(`unknown or incomplete option '${args[i]}'; options: ${valued.join(' ')}`);
    process.exit(2);
  }
}
const option = (name, fallback) => harnessOption(args, name, fallback);
const backend = option('backend', 'cpu');
const rounds = Number(option('rounds', '5'));
const model = option('model', 'fashion-mnist');
const previews = option('previews', 'worker');
const sizes = ['1', '4', '9', '16'];

const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'var-web', 'target');
const varBin = process.env.VAR_BIN || join(targetDir, 'debug', 'var');
if (!existsSync(varBin)) {
  console.error(`no var binary at ${varBin}: run scripts/build-web.sh first (or set VAR_BIN)`);
  process.exit(1);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const { server, base } = await servePage(varBin, join(root, 'www'));
let browser;
try {
  browser = await launchChromium();
  const page = await browser.newPage();
  await page.goto(`${base}?backend=${backend}&model=${encodeURIComponent(model)}&previews=${previews}`);
  const settled = (states) => page.waitForFunction((s) => s.includes(document.getElementById('status').dataset.state),
    states, { timeout: 3_600_000, polling: 50 });
  await settled(['ready', 'error']);
  const run = async (size) => {
    await page.selectOption('#batch', size);
    await page.click('#generate');
    await settled(['done', 'error']);
    const text = await page.textContent('#timings');
    const total = /total (\d+) ms/.exec(text);
    if (!total) throw new Error(await page.textContent('#status'));
    return Number(total[1]);
  };
  await run('1');
  // The preview worker loads its copy of the model after the page is ready: warm up until
  // one image's previews come from it.
  for (let i = 0; previews === 'worker' && i < 50; i += 1) {
    if ((await page.textContent('#timings')).includes('second worker')) break;
    if (i === 49) throw new Error('the previews never came from the preview worker');
    await page.waitForTimeout(100);
    await run('1');
  }
  const times = Object.fromEntries(sizes.map((s) => [s, []]));
  for (let r = 0; r < rounds; r += 1) for (const s of sizes) times[s].push(await run(s));
  const one = median(times['1']);
  console.log(`${model} on ${backend} (previews: ${previews}) in ${await browser.version()}, ${rounds} rounds after a warm-up; medians`);
  console.log('images  total ms  ms per image  x one image');
  for (const s of sizes) {
    const m = median(times[s]);
    console.log(`${s.padStart(6)}  ${String(m).padStart(8)}  ${(m / Number(s)).toFixed(0).padStart(12)}  ${(m / one).toFixed(2).padStart(11)}`);
  }
} catch (e) {
  console.error(`bench-batch: ${e.message ?? e}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  server.kill();
}
