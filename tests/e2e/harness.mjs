// What the page tests and the scripts that drive the page in headless Chromium share: the
// page served by `var serve` on a free port, Chromium with WebGPU enabled, and command-line
// options.
import { spawn } from 'node:child_process';
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
