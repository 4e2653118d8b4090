// The official-model path of the page, without the real weights: official-format checkpoints
// (the reference's fixtures, same key names and layout as var_d16.pth) served by a local
// stand-in for the hub on a second origin, converted in the page by the code `var convert`
// runs, kept in the browser's storage, and generating the reference's greedy images.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, mkdtempSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { servePage, serveHub, launchChromium, safetensorsF32 } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = join(root, 'tests', 'fixtures');
const varBin = process.env.VAR_BIN;
const LONG = 10 * 60 * 1000;
const golden = JSON.parse(readFileSync(join(fixtures, 'golden_mini.json'), 'utf8'));
let page0;
let hub;
let browser;
let cliFingerprint;
let scratch;

// A catalogue like the shipped one, whose one official-format entry is the mini fixture,
// at f32 so that greedy decoding can be compared with the reference's.
const catalog = (base) => ({
  format: 'var-web-catalog',
  version: 1,
  hub: `${base}ranged/`,
  models: [{
    id: 'var-mini',
    title: 'VAR mini fixture (reference random weights)',
    kind: 'pth',
    vae: golden.vae_file,
    var: golden.var_file,
    patch_nums: golden.patch_nums,
    precision: 'f32',
    classes: golden.num_classes,
    image_size: golden.image_size,
    download_bytes: [golden.vae_file, golden.var_file].map((f) => statSync(join(fixtures, f)).size).reduce((a, b) => a + b),
    stored_bytes: 0,
    weights_gpu_bytes: 0,
    weights_cpu_bytes: 0,
  }],
});

before(async () => {
  assert.ok(varBin, 'VAR_BIN must point at the var binary');
  // What the CLI says the same files convert to (default 64 MiB shards, as the page writes).
  scratch = mkdtempSync(join(tmpdir(), 'var-official-'));
  const c = spawnSync(varBin, ['convert', '--vae', join(fixtures, golden.vae_file), '--var', join(fixtures, golden.var_file),
    '--patch-nums', golden.patch_nums.join(','), '--precision', 'f32', '--out', join(scratch, 'var-mini')], { encoding: 'utf8' });
  assert.equal(c.status, 0, c.stderr);
  cliFingerprint = /fingerprint ([0-9a-f]{64})/.exec(c.stdout)[1];
  // PAGE_ROOT: another build of the page (scripts/build-site.sh's dist/) to check.
  page0 = await servePage(varBin, process.env.PAGE_ROOT || join(root, 'www'));
  hub = await serveHub(fixtures, catalog);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  page0?.server.kill();
  hub?.server.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const status = (page) => page.locator('#status');
const waitState = (page, wanted) => page.waitForFunction(
  (w) => w.includes(document.getElementById('status').dataset.state), wanted, { timeout: LONG, polling: 100 });
const pthRequests = () => hub.requests.filter((r) => r.includes('.pth'));

async function open(context, query) {
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[page] ${m.text()}`); });
  await page.goto(`${page0.base}?catalog=${encodeURIComponent(`${hub.base}catalog.json`)}&model=var-mini&backend=cpu${query}`);
  return page;
}

// Converts after the confirmation, and checks the fingerprint against the CLI's.
async function confirmAndConvert(page) {
  await waitState(page, ['confirm', 'error']);
  assert.equal(await status(page).getAttribute('data-state'), 'confirm', await status(page).textContent());
  assert.match(await page.textContent('#source-prompt-text'), /downloads 20 MB from 127\.0\.0\.1:\d+ .* 127\.0\.0\.1:\d+ is not the official hub: continue only if you trust it\./);
  await page.click('#confirm-source');
  await waitState(page, ['ready', 'error']);
  assert.equal(await status(page).getAttribute('data-state'), 'ready', await status(page).textContent());
  assert.match(await status(page).textContent(), /converted here and kept/);
  assert.equal(await page.locator('#model-info').getAttribute('data-fingerprint'), cliFingerprint);
}

// Greedy decoding of class `label` at `cfg` (top-k 1), against the reference's image.
async function checkGreedy(page, c) {
  const label = golden.greedy_labels[0];
  await page.selectOption('#class-select', String(label));
  await page.fill('#cfg', String(golden.greedy_cfgs[c]));
  await page.fill('#top-k', '1');
  await page.fill('#top-p', '1');
  await page.click('#generate');
  await waitState(page, ['done', 'error']);
  assert.equal(await status(page).getAttribute('data-state'), 'done', await status(page).textContent());
  const rgba = await page.evaluate(() => {
    const canvas = document.getElementById('output');
    return [...canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data];
  });
  const { shape, values } = safetensorsF32(readFileSync(join(fixtures, 'golden_mini.safetensors')), `greedy${c}.img01`);
  const [, channels, h, w] = shape;
  assert.equal(rgba.length, h * w * 4);
  let worst = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < channels; ch++) {
        const reference = values[(ch * h + y) * w + x] * 255; // batch row 0
        worst = Math.max(worst, Math.abs(rgba[(y * w + x) * 4 + ch] - reference));
      }
    }
  }
  assert.ok(worst <= 2.5, `greedy image within ${worst.toFixed(2)}/255 of the reference`);
  return worst;
}

test('official-format checkpoints from a second-origin hub with Range: confirmed, converted, kept, the reference greedy image', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const page = await open(context, '');
  const start = page.url();
  hub.requests.length = 0;
  await confirmAndConvert(page);
  const ranged = pthRequests();
  assert.ok(ranged.every((r) => r.startsWith('GET /ranged/')), ranged.join(', '));
  assert.ok(ranged.length >= 4 && ranged.length < 200, `${ranged.length} range requests`);
  const worst = await checkGreedy(page, 0);
  console.log(`# greedy image within ${worst.toFixed(2)}/255; ${ranged.length} range requests`);

  // The storage list shows it; a new visit loads it from storage without asking the hub. (The
  // start address: after a generation the address is a link that generates that image again.)
  assert.match(await page.textContent('#storage-list'), /var-mini: \d+(\.\d)? MB/);
  hub.requests.length = 0;
  await page.goto(start);
  await waitState(page, ['ready', 'error']);
  assert.match(await status(page).textContent(), /from this browser's storage/);
  assert.deepEqual(pthRequests(), [], 'no checkpoint request on reload');
  assert.equal(await page.locator('#model-info').getAttribute('data-fingerprint'), cliFingerprint);

  // Removed from storage, it must be converted again (so the removal was real).
  await page.click('#storage-list button[data-model="var-mini"]');
  await page.waitForFunction(() => /No converted models/.test(document.getElementById('storage-list').textContent));
  await page.goto(start);
  await waitState(page, ['confirm', 'error']);
  assert.equal(await status(page).getAttribute('data-state'), 'confirm');
  await context.close();
});

test('a hub that ignores Range: the file streams into storage once, and converts to the same fingerprint', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const page = await open(context, `&hub=${encodeURIComponent(`${hub.base}plain/`)}`);
  hub.requests.length = 0;
  await confirmAndConvert(page);
  const requests = pthRequests();
  assert.deepEqual(requests.sort(), [`GET /plain/${golden.var_file}`, `GET /plain/${golden.vae_file}`].sort(), requests.join(', '));
  await context.close();
});

test('local .pth files convert the same way (Open .pth files…, and dropped on the page)', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const page = await open(context, '');
  await waitState(page, ['confirm', 'error']);
  hub.requests.length = 0;
  await page.setInputFiles('#open-pth', [join(fixtures, golden.vae_file), join(fixtures, golden.var_file)]);
  await waitState(page, ['ready', 'error']);
  assert.equal(await status(page).getAttribute('data-state'), 'ready', await status(page).textContent());
  assert.equal(await page.locator('#model-info').getAttribute('data-fingerprint'), cliFingerprint);
  assert.deepEqual(pthRequests(), [], 'nothing fetched from the hub');

  // Dropped on the page: the same conversion (Files built in the page, dropped on the body).
  const dropped = await open(context, '');
  await waitState(dropped, ['confirm', 'ready', 'error']);
  await dropped.evaluate(async ({ hubBase, names }) => {
    const transfer = new DataTransfer();
    for (const name of names) {
      const blob = await (await fetch(`${hubBase}plain/${name}`)).blob();
      transfer.items.add(new File([blob], name));
    }
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, { hubBase: hub.base, names: [golden.vae_file, golden.var_file] });
  // It was stored by the test above, so "converted here" says the dropped files were converted.
  await dropped.waitForFunction(() => /converted here and kept|^Error/.test(document.getElementById('status').textContent), null, { timeout: LONG });
  assert.equal(await status(dropped).getAttribute('data-state'), 'ready', await status(dropped).textContent());
  assert.equal(await dropped.locator('#model-info').getAttribute('data-fingerprint'), cliFingerprint);
  await context.close();
});

test('bad sources: a missing file, a web page, a transfer cut short, swapped files, one file: one sentence each, nothing kept', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const missing = await open(context, `&hub=${encodeURIComponent(`${hub.base}nowhere/`)}`);
  await waitState(missing, ['confirm', 'error']);
  await missing.click('#confirm-source');
  await waitState(missing, ['error', 'ready']);
  assert.match(await status(missing).textContent(), new RegExp(`${golden.vae_file}: the server has no such file \\(404`));
  await missing.close();

  const html = await open(context, `&hub=${encodeURIComponent(`${hub.base}html/`)}`);
  await waitState(html, ['confirm', 'error']);
  await html.click('#confirm-source');
  await waitState(html, ['error', 'ready']);
  assert.match(await status(html).textContent(), new RegExp(`${golden.vae_file}: .* answered with a web page, not a checkpoint`));
  await html.close();

  const short = await open(context, `&hub=${encodeURIComponent(`${hub.base}short/`)}`);
  await waitState(short, ['confirm', 'error']);
  await short.click('#confirm-source');
  await waitState(short, ['error', 'ready']);
  assert.match(await status(short).textContent(), new RegExp(`${golden.vae_file} ended early: \\d+ bytes at byte \\d+ where \\d+ were asked for`));
  await short.close();

  const page = await open(context, '');
  await waitState(page, ['confirm', 'error']);
  // The transformer offered as the VQ-VAE and the other way round.
  const swapped = join(scratch, 'vae-is-really-var.pth');
  spawnSync('cp', [join(fixtures, golden.var_file), swapped]);
  await page.setInputFiles('#open-pth', [swapped, join(fixtures, golden.vae_file)]);
  await waitState(page, ['error', 'ready']);
  assert.equal(await status(page).getAttribute('data-state'), 'error');
  assert.match(await status(page).textContent(), new RegExp(`vae-is-really-var\\.pth is a VAR transformer and ${golden.vae_file.replace('.', '\\.')} a VQ-VAE: the two files are swapped`));
  await page.setInputFiles('#open-pth', [join(fixtures, golden.vae_file)]);
  assert.match(await status(page).textContent(), /choose the two checkpoints together/);
  assert.match(await page.textContent('#storage-list'), /No converted models/);
  await context.close();
});

test('cancel during a conversion stops it, keeps nothing, and a retry works', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const page = await open(context, `&hub=${encodeURIComponent(`${hub.base}slow/`)}`);
  await waitState(page, ['confirm', 'error']);
  await page.click('#confirm-source');
  await page.waitForFunction(() => /Converting: [1-9]/.test(document.getElementById('progress-text').textContent),
    null, { timeout: LONG, polling: 50 });
  await page.click('#cancel');
  await waitState(page, ['idle', 'error', 'ready']);
  assert.equal(await status(page).getAttribute('data-state'), 'idle', await status(page).textContent());
  assert.match(await status(page).textContent(), /^Cancelled: the conversion was cancelled; nothing of it was kept/);
  assert.match(await page.textContent('#storage-list'), /No converted models/);
  // Picking the model again asks again, and converts.
  await page.selectOption('#model-select', 'var-mini');
  await confirmAndConvert(page);
  await context.close();
});

test('a second tab converting the same model is told so, and the first finishes', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const query = `&hub=${encodeURIComponent(`${hub.base}slow/`)}`;
  const first = await open(context, query);
  await waitState(first, ['confirm', 'error']);
  await first.click('#confirm-source');
  await first.waitForFunction(() => /Converting: [1-9]/.test(document.getElementById('progress-text').textContent),
    null, { timeout: LONG, polling: 50 });
  const second = await open(context, query);
  await waitState(second, ['confirm', 'error']);
  await second.click('#confirm-source');
  await waitState(second, ['error', 'ready']);
  assert.match(await status(second).textContent(), /another tab of this page is converting var-mini/);
  await waitState(first, ['ready', 'error']);
  assert.equal(await status(first).getAttribute('data-state'), 'ready', await status(first).textContent());
  assert.equal(await first.locator('#model-info').getAttribute('data-fingerprint'), cliFingerprint);
  await context.close();
});
