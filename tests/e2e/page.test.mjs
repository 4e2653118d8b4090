// End-to-end tests of the real page: served by `var serve`, driven in headless Chromium with
// WebGPU on SwiftShader. Every assertion reads the DOM contract or canvas pixels in the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, copyFileSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { servePage, launchChromium } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// PAGE_ROOT: another build of the page (scripts/build-site.sh's dist/) to check.
const www = process.env.PAGE_ROOT || join(root, 'www');
const varBin = process.env.VAR_BIN;
const LONG = 10 * 60 * 1000; // software WebGPU is slow
const results = {};
let server;
let base;
let browser;

before(async () => {
  assert.ok(varBin, 'VAR_BIN must point at the var binary');
  // A model whose transformer file is cut short: the page must say so, not hang.
  const broken = join(www, 'models', 'e2e-broken');
  mkdirSync(broken, { recursive: true });
  const good = join(www, 'models', 'fashion-mnist');
  copyFileSync(join(good, 'config.json'), join(broken, 'config.json'));
  copyFileSync(join(good, 'vqvae.safetensors'), join(broken, 'vqvae.safetensors'));
  const varBytes = readFileSync(join(good, 'var.safetensors'));
  writeFileSync(join(broken, 'var.safetensors'), varBytes.subarray(0, varBytes.length >> 1));

  // The shipped model at int8 (written by the CLI, as a person would).
  const int8 = join(www, 'models', 'e2e-int8');
  rmSync(int8, { recursive: true, force: true });
  const q = spawnSync(varBin, ['quantize', '--model', good, '--precision', 'int8', '--out', int8], { encoding: 'utf8' });
  assert.equal(q.status, 0, q.stderr);

  // The reference fixture converted into 1 MiB shards (16 files), as `var convert` writes
  // official models.
  const sharded = join(www, 'models', 'e2e-sharded');
  rmSync(sharded, { recursive: true, force: true });
  const fixtures = join(root, 'tests', 'fixtures');
  const c = spawnSync(varBin, ['convert', '--vae', join(fixtures, 'vae_tiny.pth'), '--var', join(fixtures, 'var_mini.pth'),
    '--patch-nums', '1,2,3,4', '--shard-mib', '1', '--out', sharded], { encoding: 'utf8' });
  assert.equal(c.status, 0, c.stderr);

  // A model trained here, in seconds, on a folder of images (three Fashion-MNIST classes
  // written as PNGs) at 16 px with its own scale schedule: what `var train --data DIR` makes.
  const folderModel = join(www, 'models', 'e2e-folder');
  rmSync(folderModel, { recursive: true, force: true });
  const scratch = mkdtempSync(join(tmpdir(), 'var-e2e-folder-'));
  const run = (args) => {
    const r = spawnSync(varBin, args, { encoding: 'utf8' });
    assert.equal(r.status, 0, `var ${args.join(' ')}: ${r.stderr}`);
  };
  const images = join(scratch, 'images');
  run(['export-fashion-mnist', '--out', images, '--per-class', '8', '--classes', '1,5,8']);
  run(['train', 'vqvae', '--data', images, '--out', join(scratch, 'vq'), '--image-size', '16',
    '--patch-nums', '1,2,4', '--steps', '2', '--batch', '4', '--warmup', '1']);
  run(['train', 'var', '--data', images, '--vqvae', join(scratch, 'vq', 'checkpoint'), '--out', join(scratch, 'tr'),
    '--steps', '2', '--batch', '4', '--warmup', '1', '--depth', '1', '--width', '32', '--heads', '2']);
  run(['package', '--run', join(scratch, 'tr'), '--out', folderModel]);
  rmSync(scratch, { recursive: true, force: true });

  ({ server, base } = await servePage(varBin, www));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.kill();
  rmSync(join(www, 'models', 'e2e-broken'), { recursive: true, force: true });
  rmSync(join(www, 'models', 'e2e-int8'), { recursive: true, force: true });
  rmSync(join(www, 'models', 'e2e-sharded'), { recursive: true, force: true });
  rmSync(join(www, 'models', 'e2e-folder'), { recursive: true, force: true });
  if (Object.keys(results).length) console.log(`# timings ${JSON.stringify(results)}`);
});

// `before(page)` runs before the page loads (routes that replace a file).
async function openPage(query = '', before = async () => {}) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[page] ${m.text()}`); });
  await before(page);
  await page.goto(`${base}${query}`);
  // Record every data-scale the canvas takes, in order, from inside the page. Changes within
  // one task reach the observer together: each record's new value is the next one's old value
  // (the last one's is the attribute now).
  await page.evaluate(() => {
    window.scales = [];
    const output = document.getElementById('output');
    new MutationObserver((records) => {
      records.forEach((r, i) => {
        const s = i + 1 < records.length ? records[i + 1].oldValue : output.dataset.scale;
        if (s !== null && s !== '') window.scales.push(Number(s));
      });
    }).observe(output, { attributes: true, attributeFilter: ['data-scale'], attributeOldValue: true });
  });
  return page;
}

const state = (page) => page.locator('#status').getAttribute('data-state');
const waitState = (page, wanted) => page.waitForFunction(
  (w) => w.includes(document.getElementById('status').dataset.state), wanted, { timeout: LONG, polling: 100 });

async function generateAndCheck(page, label) {
  await waitState(page, ['ready']);
  const config = await page.evaluate(() => [...document.querySelectorAll('#class-select option')].length);
  assert.equal(config, 10, 'the class picker lists the model\'s classes');
  await page.selectOption('#class-select', '3');
  await page.fill('#seed', '7');
  await page.evaluate(() => { window.scales = []; });
  await page.click('#generate');
  await waitState(page, ['done', 'error']);
  assert.equal(await state(page), 'done', await page.textContent('#status'));
  const scales = await page.evaluate(() => window.scales);
  assert.deepEqual(scales, [0, 1, 2, 3, 4, 5], 'every scale is drawn, in order');
  // The shipped model draws a garment (class 3, a dress) on Fashion-MNIST's black background:
  // the 2-pixel padding ring is dark, the centre is not.
  const pixels = await page.evaluate(() => {
    const c = document.getElementById('output');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let border = 0, nb = 0, centre = 0, nc = 0;
    for (let y = 0; y < c.height; y++) {
      for (let x = 0; x < c.width; x++) {
        const v = d[(y * c.width + x) * 4];
        if (y < 2 || x < 2 || y >= c.height - 2 || x >= c.width - 2) { border += v; nb++; }
        else if (y >= 8 && y < 24 && x >= 8 && x < 24) { centre += v; nc++; }
      }
    }
    return { w: c.width, h: c.height, border: border / nb, centre: centre / nc, alpha: d[3] };
  });
  assert.equal(pixels.w, 32);
  assert.equal(pixels.alpha, 255);
  assert.ok(pixels.border < 25, `the background is dark (${JSON.stringify(pixels)})`);
  assert.ok(pixels.centre > 40, `a garment fills the centre (${JSON.stringify(pixels)})`);
  const thumbs = await page.locator('#thumbs canvas').count();
  assert.equal(thumbs, 6, 'one thumbnail per scale');
  results[label] = {
    backend: await page.locator('#status').getAttribute('data-backend'),
    timings: await page.textContent('#timings'),
  };
}

test('generates on WebGPU, drawing every scale in order', { timeout: LONG }, async () => {
  const page = await openPage('?backend=webgpu');
  await waitState(page, ['ready', 'error']);
  assert.equal(await page.locator('#status').getAttribute('data-backend'), 'webgpu', await page.textContent('#backend-note'));
  await generateAndCheck(page, 'webgpu');
  await page.close();
});

test('a software WebGPU adapter (SwiftShader here) is not chosen by default: the CPU path is, and says why', { timeout: LONG }, async () => {
  const page = await openPage();
  await waitState(page, ['ready', 'error']);
  assert.equal(await page.locator('#status').getAttribute('data-backend'), 'cpu');
  assert.match(await page.textContent('#backend-note'),
    /^Running on the CPU: the WebGPU adapter \(google swiftshader\) is a software renderer, slower than the CPU path; \?backend=webgpu uses it anyway\./);
  await page.close();
});

test('the CPU fallback generates too', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await waitState(page, ['ready', 'error']);
  assert.equal(await page.locator('#status').getAttribute('data-backend'), 'cpu');
  assert.match(await page.textContent('#backend-note'), /CPU/);
  await generateAndCheck(page, 'cpu');
  await page.close();
});

test('on the CPU path the previews are decoded in a second worker: the pixels decoded inline, every scale in order, one image or a batch', { timeout: LONG }, async () => {
  const generateDress = async (page) => {
    await page.selectOption('#class-select', '3');
    await page.fill('#seed', '11');
    await page.evaluate(() => { window.scales = []; });
    await page.click('#generate');
    await waitState(page, ['done', 'error']);
    assert.equal(await state(page), 'done', await page.textContent('#status'));
  };
  const thumbnails = (page) => page.evaluate(() => [...document.querySelectorAll('#thumbs canvas')]
    .map((c) => [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data].join(',')));
  const handing = await openPage('?backend=cpu');
  await waitState(handing, ['ready']);
  // The preview worker loads its copy of the model once the page is ready; until then the
  // inference worker decodes the previews itself.
  let handed = false;
  for (let i = 0; i < 30 && !handed; i += 1) {
    await generateDress(handing);
    handed = /previews decoded in a second worker/.test(await handing.textContent('#timings'));
    if (!handed) await handing.waitForTimeout(200);
  }
  assert.ok(handed, `the previews came from the preview worker (${await handing.textContent('#timings')})`);
  assert.deepEqual(await handing.evaluate(() => window.scales), [0, 1, 2, 3, 4, 5], 'every scale drawn, in order');
  const inline = await openPage('?backend=cpu&previews=inline');
  await waitState(inline, ['ready']);
  await generateDress(inline);
  assert.doesNotMatch(await inline.textContent('#timings'), /second worker/);
  const [handedOver, decodedInline] = [await thumbnails(handing), await thumbnails(inline)];
  assert.equal(handedOver.length, 6, 'one thumbnail per scale');
  assert.equal(new Set(handedOver).size, 6, 'six different pictures');
  assert.deepEqual(handedOver, decodedInline, 'every preview has the pixels the inference worker decodes');
  assert.deepEqual(await canvasPixels(handing, 'output'), await canvasPixels(inline, 'output'));
  // A batch's previews (at each scale's token-map size) are handed over too.
  for (const page of [handing, inline]) await page.selectOption('#batch', '4');
  await generateDress(handing);
  assert.match(await handing.textContent('#timings'), /previews decoded in a second worker/);
  assert.deepEqual(await handing.evaluate(() => window.scales), [0, 1, 2, 3, 4, 5], 'every scale of the batch, in order');
  await generateDress(inline);
  assert.deepEqual(await thumbnails(handing), await thumbnails(inline), 'the batch\'s previews have the inline pixels');
  assert.deepEqual(await canvasPixels(handing, 'output'), await canvasPixels(inline, 'output'));
  results.previews_cpu = { worker: await handing.textContent('#timings'), inline: await inline.textContent('#timings') };
  await handing.close();
  await inline.close();
});

test('a preview worker that fails mid-run: the run still ends with every scale, those not decoded say so, and the next run decodes its own', { timeout: LONG }, async () => {
  // A stand-in for www/preview-worker.js that takes the model, answers that it is ready,
  // refuses scale 0's latent and throws (an uncaught error, as a trap would be) at scale 1's.
  const stub = `self.onmessage = ({ data }) => {
    const port = data.port;
    port.onmessage = ({ data: m }) => {
      if (m.type === 'preview-model' && m.configJson) port.postMessage({ type: 'preview-ready', token: m.token });
      if (m.type === 'latent' && m.si === 0) self.postMessage({ type: 'preview-failed', id: m.id, si: 0, message: 'the stand-in refuses it' });
      if (m.type === 'latent' && m.si === 1) throw new Error('the stand-in fails');
    };
  };`;
  const page = await openPage('?backend=cpu', (p) => p.route('**/preview-worker.js',
    (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: stub })));
  await waitState(page, ['ready']);
  // The stand-in answers at once; the inference worker hands over from the run after that.
  await page.waitForTimeout(500);
  await page.selectOption('#class-select', '3');
  await page.evaluate(() => { window.scales = []; });
  await page.click('#generate');
  await waitState(page, ['done', 'error']);
  assert.equal(await state(page), 'done', await page.textContent('#status'));
  assert.deepEqual(await page.evaluate(() => window.scales), [0, 1, 2, 3, 4, 5], 'every scale, in order');
  const notes = await page.locator('#thumbs li').allTextContents();
  assert.equal(notes.length, 6);
  assert.match(notes[0], /preview not decoded: the stand-in refuses it/);
  for (const note of notes.slice(1, 5)) assert.match(note, /preview not decoded: the preview worker stopped/);
  assert.doesNotMatch(notes[5], /not decoded/, 'the last scale is the inference worker\'s own decode');
  const final = await canvasPixels(page, 'output');
  assert.ok(new Set(final).size > 8, 'the final image is a picture');
  await page.evaluate(() => { window.scales = []; });
  await page.click('#generate');
  await waitState(page, ['done', 'error']);
  assert.equal(await state(page), 'done', await page.textContent('#status'));
  assert.doesNotMatch(await page.textContent('#timings'), /second worker/);
  assert.deepEqual(await canvasPixels(page, 'output'), final, 'the same image, its previews decoded inline');
  assert.equal((await page.locator('#thumbs li').allTextContents()).filter((t) => /not decoded/.test(t)).length, 0);
  await page.close();
});

test('an int8 model loads and generates (CPU fallback)', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu&model=models/e2e-int8/');
  await waitState(page, ['ready', 'error']);
  assert.equal(await state(page), 'ready', await page.textContent('#status'));
  await generateAndCheck(page, 'int8-cpu');
  await page.close();
});

test('a model trained on a folder of images (16 px, three scales, its folder names as classes) generates', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu&model=models/e2e-folder/');
  await waitState(page, ['ready', 'error']);
  assert.equal(await state(page), 'ready', await page.textContent('#status'));
  const names = await page.evaluate(() => [...document.querySelectorAll('#class-select option')].map((o) => o.textContent));
  assert.deepEqual(names.map((n) => n.replace(/^\d+\s*[·:.-]?\s*/, '')), ['Bag', 'Sandal', 'Trouser']);
  await page.selectOption('#class-select', '2');
  await page.evaluate(() => { window.scales = []; });
  await page.click('#generate');
  await waitState(page, ['done', 'error']);
  assert.equal(await state(page), 'done', await page.textContent('#status'));
  assert.deepEqual(await page.evaluate(() => window.scales), [0, 1, 2], 'each of its three scales is drawn');
  const px = await page.evaluate(() => {
    const c = document.getElementById('output');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const values = new Set();
    for (let i = 0; i < d.length; i += 4) values.add(`${d[i]},${d[i + 1]},${d[i + 2]}`);
    return { w: c.width, h: c.height, alpha: d[3], distinct: values.size };
  });
  assert.equal(px.w, 16);
  assert.equal(px.h, 16);
  assert.equal(px.alpha, 255);
  assert.ok(px.distinct > 1, `the decoder drew a picture, not a flat fill (${JSON.stringify(px)})`);
  await page.close();
});

test('cancel mid-run leaves the page ready', { timeout: LONG }, async () => {
  const page = await openPage('?backend=webgpu');
  await waitState(page, ['ready']);
  // Cancel from inside the page as soon as the first scale is drawn.
  await page.evaluate(() => {
    new MutationObserver((_, obs) => {
      if (document.getElementById('output').dataset.scale === '0') {
        document.getElementById('cancel').click();
        obs.disconnect();
      }
    }).observe(document.getElementById('output'), { attributes: true });
  });
  await page.click('#generate');
  // A scale on SwiftShader can outlast the second a soft cancel has: the worker is then
  // replaced and the model reloaded, which also ends in `ready`.
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Cancelled')
    && document.getElementById('status').dataset.state === 'ready', null, { timeout: LONG });
  assert.equal(await state(page), 'ready');
  const last = Math.max(...(await page.evaluate(() => window.scales)));
  assert.ok(last < 5, `stopped before the last scale (last drawn ${last})`);
  assert.equal(await page.locator('#generate').isDisabled(), false);
  await page.close();
});

// Reads a canvas's RGBA pixels from inside the page.
const canvasPixels = (page, id) => page.evaluate((i) => {
  const c = document.getElementById(i);
  return [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data];
}, id);

// Drags the rectangle tool over the 32 px mask from `from` to `to` (model pixels).
async function dragRectangle(page, from, to) {
  await page.check('#tool-rect');
  // Bring the whole canvas into the viewport: the mouse works in viewport coordinates.
  await page.evaluate(() => document.getElementById('mask').scrollIntoView({ block: 'center' }));
  const box = await page.locator('#mask').boundingBox();
  const at = ([x, y]) => [box.x + (box.width * x) / 32, box.y + (box.height * y) / 32];
  await page.mouse.move(...at(from));
  await page.mouse.down();
  await page.mouse.move(...at(to), { steps: 5 });
  await page.mouse.up();
}

test('in-paints a painted rectangle and keeps the rest of the image', { timeout: LONG }, async () => {
  const page = await openPage('?backend=webgpu');
  await generateAndCheck(page, 'before in-painting');
  await page.click('#mode-edit');
  assert.equal(await page.locator('#mask').isVisible(), true, 'the mask is stacked over the output');
  const source = await canvasPixels(page, 'output');

  // Nothing painted: a clear error, and nothing runs.
  await page.click('#inpaint');
  assert.equal(await state(page), 'error');
  assert.match(await page.textContent('#status'), /mask is empty/);

  // The rectangle tool, dragged over the top half: pixels 4..16 x 4..28 (snapped outwards).
  await dragRectangle(page, [4.2, 4.2], [27.8, 15.8]);
  const inRect = (x, y) => x >= 4 && x < 28 && y >= 4 && y < 16;
  const maskAlpha = async () => (await canvasPixels(page, 'mask')).filter((_, i) => i % 4 === 3);
  const painted = (await maskAlpha()).map((a, i) => (a >= 128) === inRect(i % 32, Math.floor(i / 32)));
  assert.ok(painted.every(Boolean), 'the mask is exactly the dragged rectangle');

  await page.selectOption('#edit-mode', 'inpaint');
  await page.selectOption('#edit-class', '');
  await page.evaluate(() => { window.scales = []; });
  await page.click('#inpaint');
  await waitState(page, ['done', 'error']);
  assert.equal(await state(page), 'done', await page.textContent('#status'));
  assert.deepEqual(await page.evaluate(() => window.scales), [0, 1, 2, 3, 4, 5], 'every scale streams');
  assert.match(await page.textContent('#edit-note'), /18 of 64 tokens/);

  // Pixels well outside the mask (at least 6 px below it) match the encoder reconstruction of
  // the source; pixels inside changed.
  const out = await canvasPixels(page, 'output');
  const recon = await canvasPixels(page, 'reconstruction');
  const diff = (pick) => {
    let sum = 0, n = 0;
    for (let p = 0; p < 32 * 32; p++) {
      if (!pick(p % 32, Math.floor(p / 32))) continue;
      for (let c = 0; c < 3; c++) sum += Math.abs(out[p * 4 + c] - recon[p * 4 + c]);
      n += 3;
    }
    return sum / n;
  };
  const far = diff((x, y) => y >= 22);
  const inside = diff(inRect);
  results.inpaint = { far, inside };
  assert.ok(far < 6, `far from the mask the image is the reconstruction (mean |Δ| ${far.toFixed(2)})`);
  assert.ok(inside > 3 * far + 4, `the masked region was regenerated (mean |Δ| ${inside.toFixed(2)} vs ${far.toFixed(2)} outside)`);

  // The mask survives the run; before/after shows the source and the result.
  assert.ok((await maskAlpha()).some((a) => a >= 128), 'the mask is kept after the run');
  await page.click('#before-after');
  assert.deepEqual(await canvasPixels(page, 'output'), source, '"before" is the source');
  await page.click('#before-after');
  assert.deepEqual(await canvasPixels(page, 'output'), out, '"after" is the result');
  await page.close();
});

test('"keep the original pixels outside the mask": the source beyond a 2 px seam, the edit inside', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await generateAndCheck(page, 'before in-painting');
  await page.click('#mode-edit');
  const source = await canvasPixels(page, 'output');
  await dragRectangle(page, [8.2, 8.2], [23.8, 23.8]);
  const edit = async (keep) => {
    await page.setChecked('#keep-original', keep);
    await page.click('#inpaint');
    await waitState(page, ['done', 'error']);
    assert.equal(await state(page), 'done', await page.textContent('#status'));
    return canvasPixels(page, 'output');
  };
  await page.selectOption('#edit-mode', 'inpaint');
  await page.selectOption('#edit-class', '');
  const plain = await edit(false);
  const kept = await edit(true);
  // The mask is x, y in 8..24; beyond 2 px from it every pixel is the source's, byte for byte.
  const beyond = (x, y) => x < 6 || x >= 26 || y < 6 || y >= 26;
  const inside = (x, y) => x >= 8 && x < 24 && y >= 8 && y < 24;
  let same = 0, kin = 0, differs = 0;
  for (let p = 0; p < 32 * 32; p++) {
    const [x, y] = [p % 32, Math.floor(p / 32)];
    const px = (a) => [...a.slice(p * 4, p * 4 + 4)];
    if (beyond(x, y)) {
      assert.deepEqual(px(kept), px(source), `(${x}, ${y}) is the source's pixel`);
      same += 1;
      if (px(plain).join() !== px(source).join()) differs += 1;
    } else if (inside(x, y)) {
      assert.deepEqual(px(kept), px(plain), `(${x}, ${y}) is the edit's pixel`);
      kin += 1;
    }
  }
  assert.equal(same, 32 * 32 - 20 * 20);
  assert.equal(kin, 16 * 16);
  assert.ok(differs > 0, 'without the option the kept region is the reconstruction, not the source');
  await page.close();
});

test('uploads: another aspect ratio is centre-cropped, a non-image is refused', { timeout: LONG }, async () => {
  const page = await openPage('?backend=webgpu');
  await waitState(page, ['ready']);
  // 96x64, white in the centred 64x64 square, black at the sides.
  const dataUrl = await page.evaluate(() => {
    const c = document.createElement('canvas');
    c.width = 96;
    c.height = 64;
    const x = c.getContext('2d');
    x.fillStyle = '#000';
    x.fillRect(0, 0, 96, 64);
    x.fillStyle = '#fff';
    x.fillRect(16, 0, 64, 64);
    return c.toDataURL('image/png');
  });
  const png = Buffer.from(dataUrl.split(',')[1], 'base64');
  await page.setInputFiles('#upload', { name: 'wide.png', mimeType: 'image/png', buffer: png });
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('wide.png'), null, { timeout: LONG });
  // The shipped model's config records Fashion-MNIST's fit: 28 px garments on 32 px.
  assert.match(await page.textContent('#edit-note'), /96x64, cropped to its centred 64x64 square and resized to 28x28 on a 32x32 black canvas \(2 px border\)/);
  const px = await canvasPixels(page, 'output');
  assert.equal(px.length, 32 * 32 * 4);
  const inBorder = (i) => { const p = i >> 2, x = p % 32, y = p >> 5; return x < 2 || y < 2 || x >= 30 || y >= 30; };
  assert.ok(px.every((v, i) => i % 4 === 3 || (inBorder(i) ? v < 16 : v > 240)), 'the white centre square on the black border');
  assert.equal(await page.locator('#edit-controls').isVisible(), true, 'an upload opens edit mode');

  // Paint, then upload a text file: an error state, and the painted mask is still there.
  // Bring the whole canvas into the viewport: the mouse works in viewport coordinates.
  await page.evaluate(() => document.getElementById('mask').scrollIntoView({ block: 'center' }));
  const box = await page.locator('#mask').boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.setInputFiles('#upload', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a picture') });
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'error', null, { timeout: LONG });
  assert.match(await page.textContent('#status'), /notes\.png is not an image this browser can decode/);
  const alpha = (await canvasPixels(page, 'mask')).filter((_, i) => i % 4 === 3);
  assert.ok(alpha.some((a) => a >= 128), 'the painted mask survives a failed upload');
  await page.close();
});

test('a saved mask is what var inpaint --mask reads (the same tokens generated), and loads back as the same mask', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await waitState(page, ['ready']);
  // A 28x28 source, as a Fashion-MNIST image is: the model sees it as is, inside a 2 px border.
  const picture = (w, h) => page.evaluate(([w, h]) => {
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const x = c.getContext('2d');
    const g = x.createLinearGradient(0, 0, w, h);
    g.addColorStop(0, '#202020');
    g.addColorStop(1, '#e0e0e0');
    x.fillStyle = g;
    x.fillRect(0, 0, w, h);
    return c.toDataURL('image/png');
  }, [w, h]).then((url) => Buffer.from(url.split(',')[1], 'base64'));
  const png = await picture(28, 28);
  const scratch = mkdtempSync(join(tmpdir(), 'var-e2e-mask-'));
  const sourceFile = join(scratch, 'source.png');
  writeFileSync(sourceFile, png);
  await page.setInputFiles('#upload', { name: 'source.png', mimeType: 'image/png', buffer: png });
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('source.png'), null, { timeout: LONG });

  await dragRectangle(page, [6.2, 6.2], [19.8, 13.8]);
  const maskBits = async () => (await canvasPixels(page, 'mask')).filter((_, i) => i % 4 === 3).map((a) => a >= 128);
  const painted = await maskBits();
  assert.equal(painted.filter(Boolean).length, 14 * 8, 'the rectangle covers 14 x 8 model pixels');

  // Saved in the source's geometry: 28x28, white inside the rectangle less the border.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#mask-export')]);
  assert.equal(download.suggestedFilename(), 'var-mask-28x28.png');
  const maskFile = join(scratch, 'mask.png');
  await download.saveAs(maskFile);

  await page.selectOption('#edit-mode', 'inpaint');
  await page.selectOption('#edit-class', '');
  await page.click('#inpaint');
  await waitState(page, ['done', 'error']);
  assert.equal(await state(page), 'done', await page.textContent('#status'));
  const pageMask = /The mask: (.*)\./.exec(await page.textContent('#edit-note'))[1];

  // The command line, given the same source and the saved file, generates the same tokens.
  const cli = spawnSync(varBin, ['inpaint', '--model', join(www, 'models', 'fashion-mnist'), '--image', sourceFile,
    '--mask', maskFile, '--out', join(scratch, 'edit.png')], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  const cliMask = /^mask: (.*)$/m.exec(cli.stderr)[1];
  assert.equal(cliMask, pageMask);
  // The rectangle's model pixels 6..20 x 6..14 touch 4 x 3 cells of the 8x8 finest grid.
  assert.equal(cliMask, '12 of 64 tokens on the finest grid are generated');

  // Loaded back (read by the same Rust reader as --mask), it is the painted mask, pixel for pixel.
  await page.click('#mask-clear');
  assert.ok((await maskBits()).every((b) => !b), 'cleared');
  await page.setInputFiles('#mask-import', { name: 'mask.png', mimeType: 'image/png', buffer: readFileSync(maskFile) });
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('Loaded the mask mask.png'), null, { timeout: LONG });
  assert.deepEqual(await maskBits(), painted);

  // A mask of another size than the source is refused by name, and the mask stays.
  await page.setInputFiles('#mask-import', { name: 'wrong.png', mimeType: 'image/png', buffer: await picture(32, 32) });
  await waitState(page, ['error']);
  assert.match(await page.textContent('#status'), /wrong\.png: the mask is 32x32 but the image is 28x28/);
  assert.deepEqual(await maskBits(), painted);
  rmSync(scratch, { recursive: true, force: true });
  await page.close();
});

test('a broken model file gives an error state with a message', { timeout: LONG }, async () => {
  const page = await openPage('?model=models/e2e-broken/');
  await waitState(page, ['error', 'ready']);
  assert.equal(await state(page), 'error');
  assert.match(await page.textContent('#status'), /var\.safetensors/);
  await page.close();
});

test('the bench page measures f32 and int8 on WebGPU; GPU memory does not grow after the first image', { timeout: LONG }, async () => {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[page] ${m.text()}`); });
  await page.goto(`${base}bench.html?model=models/fashion-mnist/&backend=webgpu&precision=f32,int8&runs=1&topk=100`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('results').dataset.state),
    null, { timeout: LONG, polling: 200 });
  assert.equal(await page.locator('#results').getAttribute('data-state'), 'done', await page.textContent('#status'));
  const reports = JSON.parse(await page.textContent('#results'));
  assert.deepEqual(reports.map((r) => r.storage), ['f32', 'int8']);
  for (const r of reports) {
    assert.deepEqual(r.scales.map((s) => s.tokens), [1, 4, 9, 16, 36, 64]);
    assert.ok(r.scales.every((s) => s.seconds > 0 && s.gflop > 0), JSON.stringify(r.scales));
    assert.ok(r.decode_seconds > 0 && r.total_seconds >= r.transformer_seconds);
    assert.ok(r.gpu_memory, 'WebGPU reports its allocator');
    // Memory does not grow after the first image. Pages may still be re-allocated: on wasm,
    // cubecl's exclusive pools hand back pages that stayed free through five sweeps (one per
    // 1000 allocations), and the last scale's largest buffers are idle that long between two
    // images. Natively (tests/kernels.rs) the count is 0; here each is named by the counter.
    assert.ok(r.gpu_memory.reserved_mib_peak <= r.gpu_memory.reserved_mib_after_warmup, JSON.stringify(r.gpu_memory));
    assert.equal(r.gpu_memory.allocations.length > 0, r.gpu_memory.pages_allocated_in_timed_runs > 0);
    assert.ok(r.wasm_memory_mib > 0);
  }
  // The same work is counted for both precisions; the table shows both columns.
  assert.equal(reports[0].transformer_gflop, reports[1].transformer_gflop);
  const header = await page.locator('#bench-table tr').first().textContent();
  assert.match(header, /f32 .*int8 /);
  results.bench = reports.map((r) => ({ storage: r.storage, total_s: r.total_seconds, gpu: r.gpu_memory }));
  await page.close();
});

test('a sharded model: budget shown, every shard downloaded, then read from the cache on reload', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('404')) console.log(`[page] ${m.text()}`); });
  const manifest = JSON.parse(readFileSync(join(www, 'models', 'e2e-sharded', 'manifest.json'), 'utf8'));
  assert.ok(manifest.shards.length >= 10, `${manifest.shards.length} shards`);
  // Count the shard requests that reach the server.
  const fetched = [];
  page.on('request', (r) => { if (r.url().includes('e2e-sharded/') && r.url().endsWith('.safetensors')) fetched.push(r.url()); });
  const start = `${base}?model=models/e2e-sharded/&backend=cpu`;
  await page.goto(start);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: LONG });
  assert.equal(await state(page), 'ready', await page.textContent('#status'));
  assert.equal(fetched.length, manifest.shards.length, 'every shard downloaded once');
  const budget = await page.textContent('#budget');
  const total = manifest.shards.reduce((a, s) => a + s.bytes, 0);
  assert.match(budget, new RegExp(`^Downloading ${Math.round(total / 2 ** 20)} MiB; running it needs about \\d+ MiB of CPU memory \\(weights \\d+ MiB, KV cache \\d+ MiB, activations \\d+ MiB\\)\\.$`));
  assert.doesNotMatch(await page.textContent('#status'), /from the cache/);
  // It generates (a 16 px fixture model: the canvas gets every scale).
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'done', null, { timeout: LONG });
  assert.equal(await page.locator('#output').getAttribute('data-scale'), '3');

  // Reload: the manifest is asked for again (the model may have changed), the shards are not.
  // (The start address, not page.reload(): after a generation the address is a link to that
  // image, which generates it again.)
  fetched.length = 0;
  await page.goto(start);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: LONG });
  assert.match(await page.textContent('#status'), /from the cache/);
  assert.deepEqual(fetched, [], 'no shard downloaded again');
  assert.match(await page.textContent('#progress-text'), new RegExp(`${manifest.shards.length + 1} of ${manifest.shards.length + 1} files \\(${manifest.shards.length + 1} from the cache\\)`));

  // A shard replaced on the server (another model at the same URL) is caught by its checksum.
  await page.route('**/e2e-sharded/manifest.json', async (route) => {
    const m = JSON.parse(JSON.stringify(manifest));
    m.shards[1].sha256 = 'f'.repeat(64);
    await route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(m) });
  });
  await page.goto(start);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: LONG });
  assert.equal(await state(page), 'error');
  assert.match(await page.textContent('#status'), new RegExp(`${manifest.shards[1].file}: its SHA-256 differs from the manifest's`));
  await context.close();
});

// The shard-by-shard load puts each shard's tensors on the GPU as it arrives (Linear weights
// transposed there); the picture must be the one the same weights give loaded whole.
test('a sharded model staged on WebGPU draws the same pixels as the model in three files', { timeout: LONG }, async () => {
  const draw = async (model) => {
    const page = await openPage(`?model=models/${model}/&backend=webgpu`);
    await waitState(page, ['ready', 'error']);
    assert.equal(await state(page), 'ready', await page.textContent('#status'));
    assert.equal(await page.locator('#status').getAttribute('data-backend'), 'webgpu', await page.textContent('#backend-note'));
    await page.selectOption('#class-select', '1');
    await page.fill('#seed', '5');
    await page.click('#generate');
    await waitState(page, ['done', 'error']);
    assert.equal(await state(page), 'done', await page.textContent('#status'));
    const pixels = await canvasPixels(page, 'output');
    await page.close();
    return pixels;
  };
  const whole = await draw('fixture-mini');
  const sharded = await draw('e2e-sharded');
  assert.equal(sharded.length, whole.length);
  const differ = sharded.filter((v, i) => v !== whole[i]).length;
  assert.equal(differ, 0, `${differ} of ${whole.length} channel values differ`);
  assert.ok(new Set(whole).size > 8, 'a picture, not a flat canvas');
});

const gridPixels = (page) => page.evaluate(() => [...document.querySelectorAll('#grid canvas')]
  .map((c) => [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data]));
const runAndWait = async (page) => {
  await page.evaluate(() => { window.scales = []; });
  await page.click('#generate');
  await waitState(page, ['done', 'error']);
  assert.equal(await state(page), 'done', await page.textContent('#status'));
};
const msOf = async (page) => Number(/total (\d+) ms/.exec(await page.textContent('#timings'))[1]);

test('a batch of 4 is one run that fills a 2x2 grid scale by scale; its images differ; a click makes one the main image', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await waitState(page, ['ready']);
  await page.selectOption('#class-select', '3');
  await runAndWait(page); // the first run also pays one-time costs (buffers, kernels' setup)
  await runAndWait(page);
  const one = await msOf(page);
  await page.selectOption('#batch', '4');
  await runAndWait(page);
  assert.deepEqual(await page.evaluate(() => window.scales), [0, 1, 2, 3, 4, 5], 'one run, every scale drawn once');
  const four = await msOf(page);
  assert.match(await page.textContent('#timings'), /ms per image \(4 in one batched run\)/);
  const grid = await gridPixels(page);
  assert.equal(grid.length, 4);
  assert.equal(new Set(grid.map((g) => g.join(','))).size, 4, 'four different images');
  assert.deepEqual(await canvasPixels(page, 'output'), grid[0], 'the first is the main image');
  await page.click('#grid canvas[data-index="2"]');
  assert.deepEqual(await canvasPixels(page, 'output'), grid[2], 'the clicked one is the main image');
  assert.equal(new URL(page.url()).searchParams.get('pick'), '2');
  await page.selectOption('#batch', '16');
  await runAndWait(page);
  assert.equal((await gridPixels(page)).length, 16);
  const sixteen = await msOf(page);
  results.batch_cpu_ms = { one, four, sixteen, sixteen_over_one: sixteen / one };
  await page.close();
});

test('a copied link reproduces the same pixels in a fresh browser context; a link to a class the model lacks, or to another model, says so', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await waitState(page, ['ready']);
  await page.selectOption('#class-select', '5');
  await page.fill('#seed', '42');
  await page.selectOption('#batch', '4');
  await runAndWait(page);
  await page.click('#grid canvas[data-index="1"]');
  const expected = await canvasPixels(page, 'output');
  const link = page.url();
  assert.match(link, /class=5&seed=42&.*batch=4&.*pick=1/);
  await page.close();

  const context = await browser.newContext();
  const fresh = await context.newPage();
  await fresh.goto(link); // a link with a seed generates its image once the model is ready
  await fresh.waitForFunction(() => ['done', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: LONG });
  assert.equal(await state(fresh), 'done', await fresh.textContent('#status'));
  assert.deepEqual(await canvasPixels(fresh, 'output'), expected, 'the same image');
  assert.equal(await fresh.inputValue('#seed'), '42');

  await fresh.goto(`${base}?backend=cpu&class=99&seed=1`);
  await fresh.waitForFunction(() => ['ready', 'done', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: LONG });
  assert.equal(await state(fresh), 'ready', 'a bad link generates nothing');
  assert.match(await fresh.textContent('#status'), /The link's class 99 is not one of this model's 10 classes\./);

  // A link for a model that is not loaded: nothing of it is applied to the one loaded instead,
  // and it still generates once its own model is.
  await fresh.goto(`${base}?backend=cpu&model=var-d16&class=7&seed=5`);
  await fresh.waitForFunction(() => document.getElementById('status').dataset.state === 'confirm', null, { timeout: LONG });
  await fresh.selectOption('#model-select', 'fashion-mnist');
  await fresh.waitForFunction(() => ['ready', 'done', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: LONG });
  assert.equal(await state(fresh), 'ready', 'the link does not generate on another model');
  assert.match(await fresh.textContent('#status'), /This link is for the model var-d16, not fashion-mnist, the one loaded now: its image appears when var-d16 is loaded\./);
  assert.notEqual(await fresh.inputValue('#seed'), '5', "the link's seed is not applied to another model");
  await context.close();
});

test('the scrubber shows the chosen scale; keyboard: R picks a seed, Enter generates', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await waitState(page, ['ready']);
  await runAndWait(page);
  assert.equal(await page.locator('#scale-scrubber').getAttribute('max'), '5');
  const thumb2 = await page.evaluate(() => {
    const c = document.querySelectorAll('#thumbs canvas')[2];
    return { w: c.width, data: [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data] };
  });
  await page.locator('#scale-scrubber').fill('2');
  assert.equal(await page.locator('#output').getAttribute('data-scale'), '2');
  assert.deepEqual(await canvasPixels(page, 'output'), thumb2.data, 'the canvas shows scale 3\'s preview');
  assert.match(await page.textContent('#scale-label'), /^3 of 6 \(3×3\)$/);
  await page.locator('#scale-scrubber').fill('5');
  const last = await canvasPixels(page, 'output');

  const seed = await page.inputValue('#seed');
  await page.locator('body').press('r');
  assert.notEqual(await page.inputValue('#seed'), seed, 'R picked a random seed');
  await page.locator('body').press('Enter');
  await waitState(page, ['busy', 'done']);
  await waitState(page, ['done', 'error']);
  assert.notDeepEqual(await canvasPixels(page, 'output'), last, 'Enter generated another image');
  await page.close();
});

test('history: every result is kept, survives a reload, restores its settings and image, and clears', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}?backend=cpu`);
  await waitState(page, ['ready']);
  assert.equal(await page.locator('#history button').count(), 0);
  await page.selectOption('#class-select', '1');
  await page.fill('#seed', '3');
  await runAndWait(page);
  const first = await canvasPixels(page, 'output');
  await page.selectOption('#class-select', '8');
  await page.fill('#seed', '4');
  await runAndWait(page);
  assert.equal(await page.locator('#history button').count(), 2);

  await page.goto(`${base}?backend=cpu`);
  await waitState(page, ['ready']);
  assert.equal(await page.locator('#history button').count(), 2, 'the history survives a reload');
  await page.click('#history button[data-index="1"]'); // the older one
  await page.waitForFunction(() => /From the history/.test(document.getElementById('status').textContent));
  assert.equal(await page.inputValue('#seed'), '3');
  assert.equal(await page.inputValue('#class-select'), '1');
  assert.deepEqual(await canvasPixels(page, 'output'), first, 'its image is back on the canvas');

  await page.click('#clear-history');
  assert.equal(await page.locator('#history button').count(), 0);
  await page.reload();
  await waitState(page, ['ready']);
  assert.equal(await page.locator('#history button').count(), 0, 'cleared for good');
  await context.close();
});

// --- Hostile sources and a worker that must be replaced (issue 20) --------------------------

test('a model on another origin is loaded only after a yes, with its origin and download size shown', { timeout: LONG }, async () => {
  const other = base.replace('127.0.0.1', 'localhost'); // the same server, another origin
  const page = await browser.newPage();
  const weights = [];
  page.on('request', (r) => { if (r.url().startsWith(other) && r.url().endsWith('.safetensors') && r.method() === 'GET') weights.push(r.url()); });
  await page.goto(`${base}?model=${encodeURIComponent(`${other}models/fashion-mnist/`)}&backend=cpu`);
  await waitState(page, ['confirm', 'error', 'ready']);
  assert.equal(await state(page), 'confirm', await page.textContent('#status'));
  const shipped = join(www, 'models', 'fashion-mnist');
  const bytes = ['config.json', 'vqvae.safetensors', 'var.safetensors']
    .reduce((a, f) => a + readFileSync(join(shipped, f)).length, 0);
  const prompt = await page.textContent('#source-prompt-text');
  assert.ok(prompt.includes(other.replace(/\/$/, '')), prompt);
  assert.ok(prompt.includes(`${(bytes / 1e6).toFixed(1)} MB`), `${prompt} (${bytes} bytes)`);
  assert.deepEqual(weights, [], 'no weights are downloaded before the yes');
  await page.click('#confirm-source');
  await waitState(page, ['ready', 'error']);
  assert.equal(await state(page), 'ready', await page.textContent('#status'));
  assert.equal(weights.length, 2);
  await page.close();
});

test('a cached config.json is used only with the manifest that pins it', { timeout: LONG }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const dir = join(www, 'models', 'e2e-sharded');
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  assert.match(manifest.config_sha256, /^[0-9a-f]{64}$/, 'var convert pins config.json in the manifest');
  const start = `${base}?model=models/e2e-sharded/&backend=cpu`;
  const ready = async () => {
    await page.goto(start);
    await waitState(page, ['ready', 'error']);
  };
  await ready();
  assert.equal(await state(page), 'ready', await page.textContent('#status'));
  const firstClass = () => page.evaluate(() => document.querySelector('#class-select option').textContent);
  const before = await firstClass();

  // Republished at the same URL: a class renamed, the manifest pinning the new config, the
  // same shards. The config in the cache must not be used.
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  config.class_names[0] = 'republished';
  const newConfig = JSON.stringify(config, null, 2);
  const routeManifest = (m) => page.route('**/e2e-sharded/manifest.json',
    (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(m) }));
  await routeManifest({ ...manifest, config_sha256: createHash('sha256').update(newConfig).digest('hex') });
  await page.route('**/e2e-sharded/config.json', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: newConfig }));
  await ready();
  assert.equal(await state(page), 'ready', await page.textContent('#status'));
  assert.equal(await firstClass(), '0: republished', `was ${before}`);

  // A config.json that is not the one the manifest pins is refused.
  await page.unroute('**/e2e-sharded/manifest.json');
  await routeManifest({ ...manifest, config_sha256: 'a'.repeat(64) });
  await ready();
  assert.equal(await state(page), 'error');
  assert.match(await page.textContent('#status'), /config\.json: its SHA-256 differs from the manifest's/);
  await context.close();
});

test('cancel during a load that does not answer brings back the model that was ready', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await waitState(page, ['ready']);
  // Shards that never arrive: the load hangs until it is cancelled.
  await page.route('**/e2e-sharded/*.safetensors', () => {});
  await page.selectOption('#model-select', 'custom');
  await page.fill('#model-url', 'models/e2e-sharded/');
  const shard = page.waitForRequest((r) => r.url().includes('e2e-sharded/') && r.url().endsWith('.safetensors'));
  await page.click('#load-model');
  await shard;
  assert.equal(await state(page), 'loading');
  await page.click('#cancel');
  await page.waitForFunction(() => {
    const s = document.getElementById('status');
    return s.dataset.state === 'ready' || s.dataset.state === 'error';
  }, null, { timeout: 60_000, polling: 100 });
  const text = await page.textContent('#status');
  assert.equal(await state(page), 'ready', text);
  assert.match(text, /^Cancelled: .*Ready: fashion-mnist /, text);
  await page.selectOption('#class-select', '1');
  await runAndWait(page);
  await page.close();
});

test('cancel within a long scale (the first on SwiftShader) replaces the worker and returns to ready', { timeout: LONG }, async () => {
  const page = await openPage('?backend=webgpu');
  await waitState(page, ['ready']);
  await page.click('#generate');
  await waitState(page, ['busy']);
  const clicked = Date.now();
  await page.click('#cancel');
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'ready'
    && document.getElementById('status').textContent.startsWith('Cancelled'), null, { timeout: LONG, polling: 100 });
  const text = await page.textContent('#status');
  results['hard cancel to ready (ms)'] = Date.now() - clicked;
  assert.match(text, /^Cancelled: the worker did not stop within a second, so it was replaced\. Ready: fashion-mnist /, text);
  assert.equal(await page.locator('#generate').isDisabled(), false);
  await page.close();
});

test('a worker that traps is replaced and the model reloaded; an empty class filter disables Generate', { timeout: LONG }, async () => {
  const page = await openPage('?backend=cpu');
  await waitState(page, ['ready']);
  const [worker] = page.workers();
  assert.ok(worker, 'the inference worker runs');
  // An uncaught trap in the worker, as a wasm panic or out-of-memory abort raises one.
  await worker.evaluate(() => setTimeout(() => { throw new WebAssembly.RuntimeError('unreachable executed'); }, 0));
  await page.waitForFunction(() => /so it was replaced/.test(document.getElementById('status').textContent)
    && document.getElementById('status').dataset.state === 'ready', null, { timeout: LONG, polling: 100 });
  assert.match(await page.textContent('#status'), /^Error: the worker failed \(.*unreachable executed.*\), so it was replaced\. Ready: fashion-mnist /);
  await page.selectOption('#class-select', '2');
  await runAndWait(page); // the fresh worker generates

  await page.fill('#class-filter', 'no such class');
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.match(await page.textContent('#class-empty'), /No class matches “no such class”/);
  await page.fill('#class-filter', 'bag');
  assert.equal(await page.locator('#generate').isDisabled(), false);
  assert.equal(await page.inputValue('#class-select'), '8');
  await page.close();
});
