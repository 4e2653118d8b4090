// The bench page: runs the wasm `bench` export (src/bench.rs, the same measurements as
// `var bench`) for each backend x precision, one after another, and writes the reports into
// #results as JSON (data-state: idle | running | done | error) and a side-by-side table.
// scripts/bench-web.mjs drives it in headless Chromium. Runs on the main thread on purpose:
// nothing else happens on this page, and the timings then include no worker messaging.
import init, { bench } from './pkg/var_web.js';

const $ = (id) => document.getElementById(id);
const status = (state, text) => {
  $('status').dataset.state = state;
  $('status').textContent = text;
};

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: the server answered ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

function cell(seconds, gflop) {
  return seconds == null ? '-' : `${seconds.toFixed(3)} s (${(gflop / seconds).toFixed(1)} GFLOP/s)`;
}

function renderTable(reports) {
  const table = $('bench-table');
  table.replaceChildren();
  if (!reports.length) return;
  const row = (cells, tag = 'td') => {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const el = document.createElement(tag);
      el.textContent = c;
      tr.append(el);
    }
    table.append(tr);
  };
  const first = reports[0];
  row(['', 'tokens', 'GFLOP', ...reports.map((r) => `${r.storage} ${r.backend}`)], 'th');
  first.scales.forEach((s, i) => row([`scale ${i}`, s.tokens, s.gflop.toFixed(2),
    ...reports.map((r) => cell(r.scales[i].seconds, r.scales[i].gflop))]));
  row(['transformer', first.scales.reduce((a, s) => a + s.tokens, 0), first.transformer_gflop.toFixed(2),
    ...reports.map((r) => cell(r.transformer_seconds, r.transformer_gflop))]);
  if (first.decode_seconds != null) {
    row(['VQ-VAE decode', '', first.decode_gflop.toFixed(2), ...reports.map((r) => cell(r.decode_seconds, r.decode_gflop))]);
  }
  row(['total', '', '', ...reports.map((r) => `${r.total_seconds.toFixed(3)} s`)]);
  row(['GPU in use', '', '', ...reports.map((r) => (r.gpu_memory ? `${r.gpu_memory.in_use_mib_after_warmup.toFixed(1)} MiB` : '-'))]);
  row(['GPU reserved', '', '', ...reports.map((r) => (r.gpu_memory ? `${r.gpu_memory.reserved_mib_peak.toFixed(0)} MiB` : '-'))]);
  row(['GPU allocs, timed', '', '', ...reports.map((r) => (r.gpu_memory ? r.gpu_memory.pages_allocated_in_timed_runs : '-'))]);
  row(['wasm memory', '', '', ...reports.map((r) => `${r.wasm_memory_mib.toFixed(0)} MiB`)]);
  // Kernel dispatches of one timed image, counted at each launch (WebGPU only).
  if (reports.some((r) => r.dispatches)) {
    const counted = (f) => reports.map((r) => (r.dispatches ? f(r.dispatches) : '-'));
    first.scales.forEach((s, i) => row([`dispatches, scale ${i}`, '', '', ...counted((d) => d.per_scale[i])]));
    row(['dispatches, decode', '', '', ...counted((d) => d.decode)]);
    row(['dispatches, image', '', '', ...counted((d) => d.per_image)]);
  }
}

async function run(options) {
  const reports = [];
  $('results').dataset.state = 'running';
  $('bench-run').disabled = true;
  try {
    await init();
    let files = [undefined, undefined, undefined];
    const official = options.model.match(/^d(\d+)$/);
    if (!official) {
      const base = options.model.endsWith('/') ? options.model : `${options.model}/`;
      status('running', `downloading ${base}`);
      files = await Promise.all([
        fetch(`${base}config.json`).then((r) => {
          if (!r.ok) throw new Error(`${base}config.json: the server answered ${r.status}`);
          return r.text();
        }),
        fetchBytes(`${base}vqvae.safetensors`),
        fetchBytes(`${base}var.safetensors`),
      ]);
    }
    for (const backend of options.backends) {
      for (const precision of options.precisions) {
        status('running', `measuring ${precision} on ${backend} (${reports.length + 1} of ${options.backends.length * options.precisions.length})`);
        const json = await bench(backend, precision, official ? Number(official[1]) : 16,
          files[0], files[1], files[2], options.runs, options.topK, options.decode);
        reports.push(JSON.parse(json));
        renderTable(reports);
        $('results').textContent = JSON.stringify(reports, null, 1);
      }
    }
    $('results').dataset.state = 'done';
    status('done', `done: ${reports.length} configuration${reports.length === 1 ? '' : 's'} measured`);
  } catch (e) {
    $('results').dataset.state = 'error';
    status('error', `The benchmark failed: ${e.message ?? e}`);
  } finally {
    $('bench-run').disabled = false;
  }
}

function formOptions() {
  return {
    model: $('bench-model').value,
    backends: list($('bench-backend').value),
    precisions: list($('bench-precision').value),
    runs: Math.max(1, Number($('bench-runs').value) || 1),
    topK: Math.max(0, Number($('bench-top-k').value) || 0),
    decode: $('bench-decode').checked,
  };
}

$('bench-form').addEventListener('submit', (e) => {
  e.preventDefault();
  run(formOptions());
});

// Query parameters fill the form and start a run (what the driver script uses).
const query = new URLSearchParams(location.search);
if ([...query.keys()].length) {
  const model = query.get('model');
  if (model) {
    if (![...$('bench-model').options].some((o) => o.value === model)) $('bench-model').add(new Option(model, model));
    $('bench-model').value = model;
  }
  if (query.has('backend')) $('bench-backend').value = query.get('backend');
  if (query.has('precision')) $('bench-precision').value = query.get('precision');
  if (query.has('runs')) $('bench-runs').value = query.get('runs');
  if (query.has('topk')) $('bench-top-k').value = query.get('topk');
  if (query.has('decode')) $('bench-decode').checked = query.get('decode') !== '0';
  run(formOptions());
}
