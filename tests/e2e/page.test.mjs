// End-to-end tests of the real page: served by `var serve`, driven in headless Chromium with
// WebGPU on SwiftShader. Every assertion reads the DOM contract or canvas pixels in the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, copyFileSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const www = join(root, 'www');
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

  server = spawn(varBin, ['serve', '--port', '0', '--root', www], { stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise((resolve, reject) => {
    server.stdout.on('data', (chunk) => {
      const m = String(chunk).match(/(http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) resolve(m[1]);
    });
    server.on('exit', (code) => reject(new Error(`var serve exited with ${code}`)));
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
  rmSync(join(www, 'models', 'e2e-broken'), { recursive: true, force: true });
  if (Object.keys(results).length) console.log(`# timings ${JSON.stringify(results)}`);
});

async function openPage(query = '') {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[page] ${m.text()}`); });
  await page.goto(`${base}${query}`);
  // Record every data-scale the canvas takes, in order, from inside the page.
  await page.evaluate(() => {
    window.scales = [];
    new MutationObserver(() => {
      const s = document.getElementById('output').dataset.scale;
      if (s !== '') window.scales.push(Number(s));
    }).observe(document.getElementById('output'), { attributes: true, attributeFilter: ['data-scale'] });
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
  const page = await openPage();
  await waitState(page, ['ready', 'error']);
  assert.equal(await page.locator('#status').getAttribute('data-backend'), 'webgpu', await page.textContent('#backend-note'));
  await generateAndCheck(page, 'webgpu');
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

test('cancel mid-run leaves the page ready', { timeout: LONG }, async () => {
  const page = await openPage();
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
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Cancelled'), null, { timeout: LONG });
  assert.equal(await state(page), 'ready');
  const last = Math.max(...(await page.evaluate(() => window.scales)));
  assert.ok(last < 5, `stopped before the last scale (last drawn ${last})`);
  assert.equal(await page.locator('#generate').isDisabled(), false);
  await page.close();
});

test('a broken model file gives an error state with a message', { timeout: LONG }, async () => {
  const page = await openPage('?model=models/e2e-broken/');
  await waitState(page, ['error', 'ready']);
  assert.equal(await state(page), 'error');
  assert.match(await page.textContent('#status'), /var\.safetensors/);
  await page.close();
});
