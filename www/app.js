// The page: controls, canvas and thumbnails. All model work is in worker.js (see protocol.js).
import { MSG } from './protocol.js';

// The shipped model; until the trained Fashion-MNIST model lands, the reference fixture stands in.
// The model trained here on Fashion-MNIST (committed; see the README's training section).
const DEFAULT_MODEL = 'models/fashion-mnist/';
const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), note: $('backend-note'), modelUrl: $('model-url'), loadModel: $('load-model'),
  progress: $('progress'), progressBar: $('progress-bar'), progressText: $('progress-text'),
  classFilter: $('class-filter'), classSelect: $('class-select'), seed: $('seed'), randomSeed: $('random-seed'),
  cfg: $('cfg'), topK: $('top-k'), topP: $('top-p'), smooth: $('smooth'), generate: $('generate'),
  cancel: $('cancel'), download: $('download'), clearCache: $('clear-cache'), output: $('output'),
  thumbs: $('thumbs'), timings: $('timings'),
};

const query = new URLSearchParams(location.search);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
let config = null;
let backend = '';
let runId = 0;
let scaleMs = [];
const downloads = new Map();

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.dataset.backend = backend;
  ui.status.textContent = text;
  const busy = state === 'busy' || state === 'loading';
  ui.generate.disabled = busy || !config;
  ui.cancel.disabled = state !== 'busy';
  ui.loadModel.disabled = busy;
}

function drawRgba(canvas, rgba, size) {
  canvas.width = size;
  canvas.height = size;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba), size, size), 0, 0);
}

function fillClasses(names, filter = '') {
  const f = filter.trim().toLowerCase();
  const current = ui.classSelect.value;
  ui.classSelect.replaceChildren(
    ...names
      .map((name, i) => [name, i])
      .filter(([name, i]) => !f || name.toLowerCase().includes(f) || String(i) === f)
      .map(([name, i]) => new Option(`${i}: ${name}`, String(i))),
  );
  if ([...ui.classSelect.options].some((o) => o.value === current)) ui.classSelect.value = current;
}

function loadModel(url) {
  config = null;
  downloads.clear();
  ui.progress.hidden = false;
  setStatus('loading', `Loading the model from ${url}…`);
  worker.postMessage({ type: MSG.LOAD, url: new URL(url, location.href).href, backend: query.get('backend') || 'auto' });
}

function showProgress() {
  let loaded = 0;
  let total = 0;
  for (const d of downloads.values()) {
    loaded += d.loaded;
    total += d.total || d.loaded;
  }
  ui.progressBar.value = total ? loaded / total : 0;
  const parts = [...downloads].map(([f, d]) => `${f} ${(d.loaded / 1e6).toFixed(1)}${d.total ? `/${(d.total / 1e6).toFixed(1)}` : ''} MB`);
  ui.progressText.textContent = parts.join(', ');
}

worker.onmessage = ({ data }) => {
  switch (data.type) {
    case MSG.PROGRESS:
      downloads.set(data.file, data);
      showProgress();
      break;
    case MSG.READY: {
      config = data.config;
      backend = data.backend;
      ui.progress.hidden = true;
      fillClasses(config.class_names);
      const s = config.sampling;
      ui.cfg.value = s.cfg;
      ui.topK.value = s.top_k;
      ui.topP.value = s.top_p;
      ui.smooth.checked = s.more_smooth;
      ui.note.hidden = !data.reason;
      ui.note.textContent = data.reason ? `Running on the CPU: ${data.reason}.` : '';
      const where = backend === 'webgpu' ? 'WebGPU' : 'the CPU';
      setStatus('ready', `Ready: ${config.name} (${config.var.num_classes} classes, ${config.image_size} px) on ${where}${data.cached ? ', from the cache' : ''}.`);
      break;
    }
    case MSG.SCALE: {
      if (data.id !== runId) return; // a stale message from an earlier run
      drawRgba(ui.output, data.rgba, data.size);
      ui.output.dataset.scale = String(data.si);
      scaleMs.push(data.ms);
      const li = document.createElement('li');
      const thumb = document.createElement('canvas');
      drawRgba(thumb, data.rgba, data.size);
      li.append(thumb, `${data.patch}×${data.patch} · ${data.ms.toFixed(0)} ms`);
      ui.thumbs.append(li);
      const n = config.patch_nums.length;
      setStatus('busy', `Scale ${data.si + 1} of ${n} (${data.patch}×${data.patch} tokens)…`);
      break;
    }
    case MSG.DONE:
      if (data.id !== runId) return;
      drawRgba(ui.output, data.rgba, data.size);
      ui.download.disabled = false;
      ui.timings.textContent = `First preview after ${scaleMs[0].toFixed(0)} ms; total ${data.totalMs.toFixed(0)} ms; per scale: ${scaleMs.map((m) => m.toFixed(0)).join(' / ')} ms.`;
      setStatus('done', `Done in ${(data.totalMs / 1000).toFixed(2)} s on ${backend === 'webgpu' ? 'WebGPU' : 'the CPU'}.`);
      break;
    case MSG.CANCELLED:
      if (data.id !== runId) return;
      setStatus('ready', 'Cancelled. The canvas shows the last finished scale.');
      break;
    case MSG.CACHE_CLEARED:
      setStatus(ui.status.dataset.state, `${ui.status.textContent} Cached models cleared.`);
      break;
    case MSG.ERROR:
      ui.progress.hidden = true;
      if (data.phase === 'load') config = null;
      setStatus('error', `Error: ${data.message}`);
      break;
    default:
      break;
  }
};
worker.onerror = (e) => setStatus('error', `Error: the worker failed: ${e.message}`);

ui.generate.addEventListener('click', () => {
  if (!config || ui.status.dataset.state === 'busy') return;
  const label = Number(ui.classSelect.value);
  const seed = Number(ui.seed.value);
  if (!Number.isInteger(seed) || seed < 0) return setStatus('error', 'Error: the seed must be a whole number ≥ 0.');
  runId += 1;
  scaleMs = [];
  ui.thumbs.replaceChildren();
  ui.output.dataset.scale = '';
  ui.download.disabled = true;
  ui.timings.textContent = '';
  const params = {
    cfg: Number(ui.cfg.value), topK: Number(ui.topK.value), topP: Number(ui.topP.value),
    moreSmooth: ui.smooth.checked, seed,
  };
  setStatus('busy', 'Generating…');
  worker.postMessage({ type: MSG.GENERATE, id: runId, label, params });
});
ui.cancel.addEventListener('click', () => worker.postMessage({ type: MSG.CANCEL }));
ui.randomSeed.addEventListener('click', () => { ui.seed.value = String(Math.floor(Math.random() * 2 ** 31)); });
ui.classFilter.addEventListener('input', () => config && fillClasses(config.class_names, ui.classFilter.value));
ui.download.addEventListener('click', () => {
  ui.output.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `var-class${ui.classSelect.value}-seed${ui.seed.value}.png`;
    a.click();
    URL.revokeObjectURL(a.href);
  }, 'image/png');
});
ui.loadModel.addEventListener('click', () => loadModel(ui.modelUrl.value || DEFAULT_MODEL));
ui.clearCache.addEventListener('click', () => worker.postMessage({ type: MSG.CLEAR_CACHE }));

const requested = query.get('model');
ui.modelUrl.value = requested || DEFAULT_MODEL;
loadModel(ui.modelUrl.value);
