#!/usr/bin/env node
// The README's screenshots: the page with the shipped model after a 2x2 batch, at a desktop
// width (light) and a phone width (dark), written to docs/screenshots/. Needs the page built
// (scripts/build-web.sh) and the CLI (cargo test builds it).
//
//   node scripts/screenshots.mjs
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';
import { servePage, launchChromium } from '../tests/e2e/harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'var-web', 'target');
const varBin = process.env.VAR_BIN || join(targetDir, 'debug', 'var');
const out = join(root, 'docs', 'screenshots');
mkdirSync(out, { recursive: true });

const { server, base } = await servePage(varBin, join(root, 'www'));
const browser = await launchChromium();
try {
  const shots = [
    { name: 'desktop.png', viewport: { width: 1280, height: 900 }, colorScheme: 'light', deviceScaleFactor: 1 },
    { name: 'phone.png', viewport: { width: 390, height: 844 }, colorScheme: 'dark', deviceScaleFactor: 2, isMobile: true },
  ];
  for (const { name, ...options } of shots) {
    const context = await browser.newContext(options);
    const page = await context.newPage();
    // A link: class 0 (T-shirt/top), seed 7, four images; the page generates it on load.
    await page.goto(`${base}?backend=cpu&class=0&seed=7&batch=4`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('status').dataset.state), null, { timeout: 600000 });
    await page.screenshot({ path: join(out, name), fullPage: false });
    console.log(`wrote ${join(out, name)}`);
    await context.close();
  }
} finally {
  await browser.close();
  server.kill();
}
