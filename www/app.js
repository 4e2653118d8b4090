// The page: controls, canvas and thumbnails. All model work is in worker.js (see protocol.js).
import { MSG } from './protocol.js';
import { Editor, MAX_UPLOAD_BYTES } from './editor.js';

// The model trained here on Fashion-MNIST (committed; see the README's training section).
const DEFAULT_MODEL = 'models/fashion-mnist/';
// The models the picker offers (scripts/make-catalog.py writes it); `?catalog=URL` names another.
const SHIPPED_CATALOG = 'models/catalog.json';
// wasm32 addresses at most 4 GiB; a model whose weights take more than this on the CPU path
// can only run on WebGPU (which keeps int8 as int8 in GPU memory).
const CPU_WEIGHTS_LIMIT = 3 * 2 ** 30;
// Where the history is kept (local storage), and how many entries at most.
const HISTORY_KEY = 'var-web-history-v1';
const HISTORY_MAX = 48;
const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), note: $('backend-note'), modelUrl: $('model-url'), loadModel: $('load-model'),
  progress: $('progress'), progressBar: $('progress-bar'), progressText: $('progress-text'), budget: $('budget'),
  classFilter: $('class-filter'), classSelect: $('class-select'), seed: $('seed'), randomSeed: $('random-seed'),
  cfg: $('cfg'), topK: $('top-k'), topP: $('top-p'), smooth: $('smooth'), generate: $('generate'),
  cancel: $('cancel'), download: $('download'), clearCache: $('clear-cache'), output: $('output'),
  thumbs: $('thumbs'), timings: $('timings'),
  modeEdit: $('mode-edit'), upload: $('upload'), editControls: $('edit-controls'), editMode: $('edit-mode'),
  editClass: $('edit-class'), brushSize: $('brush-size'), brushSizeValue: $('brush-size-value'),
  maskClear: $('mask-clear'), maskInvert: $('mask-invert'), maskExport: $('mask-export'), maskImport: $('mask-import'), beforeAfter: $('before-after'),
  useResult: $('use-result'), inpaint: $('inpaint'), editNote: $('edit-note'), mask: $('mask'),
  sourceFigure: $('source-figure'), reconstruction: $('reconstruction'), maskVisible: $('mask-visible'),
  modelSelect: $('model-select'), modelEntry: $('model-entry'), customModel: $('custom-model'),
  classEmpty: $('class-empty'), sourcePrompt: $('source-prompt'), sourcePromptText: $('source-prompt-text'), confirmSource: $('confirm-source'),
  openPth: $('open-pth'), hubUrl: $('hub-url'), modelInfo: $('model-info'), storageList: $('storage-list'),
  keepOriginal: $('keep-original'), batch: $('batch'), pixelated: $('pixelated'), copyLink: $('copy-link'), nativeSize: $('native-size'),
  grid: $('grid'), scrub: $('scrub'), scrubber: $('scale-scrubber'), scaleLabel: $('scale-label'),
  playScales: $('play-scales'), downloadScales: $('download-scales'),
  history: $('history'), historyNote: $('history-note'), clearHistory: $('clear-history'),
};
const editor = new Editor(ui.mask);
function showMask(on) {
  ui.maskVisible.checked = on;
  ui.mask.classList.toggle('veiled', !on);
}
editor.onPaint = () => showMask(true);
ui.maskVisible.addEventListener('change', () => showMask(ui.maskVisible.checked));

const query = new URLSearchParams(location.search);
// The worker is replaced when it traps or does not answer a cancel (see restartWorker).
let worker = null;
// A cancel the worker has not answered within this long is forced: the worker is replaced.
const HARD_CANCEL_MS = 1000;
// The preview worker (preview-worker.js): on the CPU path, runs of a small model hand it
// their previews, so that they are decoded on another core while the inference worker samples
// the next scale. With one core it would only compete, and
// `?previews=inline` keeps them in the inference worker (for side-by-side measurements).
let previewWorker = null;
const previewsWanted = query.get('previews') !== 'inline' && (navigator.hardwareConcurrency || 1) >= 2;
// Everything the page knows, in one place. The DOM shows it (`data-state`, `data-backend`,
// `data-showing` are written for people and tests) but is never read back as state.
const state = {
  config: null, // the loaded model's config.json
  backend: '', // 'webgpu' | 'cpu'
  status: { state: 'loading', text: '' }, // what #status shows
  runId: 0, // the id of the running or last run; stale worker messages carry older ids
  runKind: 'generate', // what the running or last run was: 'generate' | 'edit'
  scaleMs: [], // per-scale times of the running or last run
  runStart: 0, // performance.now() when the running or last run was asked for
  arrived: [], // the scale messages of the running run by scale, shown in order as they complete
  doneMsg: null, // its 'done' message, held until every scale before it is shown
  runOpen: false, // a run is going: it has neither finished, nor been cancelled, nor failed
  previewPaired: null, // the inference worker the preview worker is paired with
  previewBroken: false, // the preview worker failed once: previews stay in the inference worker
  handedOver: false, // the running or last run's previews came from the preview worker
  firstShownMs: 0, // when its first scale was shown, from runStart
  downloads: new Map(), // file → {loaded, total, cached} during a load
  notices: [], // notices from the worker during a load (e.g. a file that could not be cached)
  editing: false, // edit mode: the mask is shown and painted over the output
  haveImage: false, // the output canvas holds a finished image
  result: null, // the last edit's result (ImageData), for the before/after toggle
  showing: 'after', // whether the canvas shows the edit's source ('before') or result
  before: false, // the before/after toggle is pressed
  sourceNote: '', // how the edit's source came to be, for #edit-note
  catalog: null, // the picker's models ({hub, models}); see SHIPPED_CATALOG
  trustedHub: '', // the shipped catalog's hub: other sources are used only once confirmed
  entry: null, // the catalog entry being loaded or loaded (null: a model by URL)
  pending: null, // the convert request waiting for #confirm-source
  adapter: null, // the WebGPU adapter's limits, or null without WebGPU
  scales: [], // every scale of the running or last generation: {si, patch, size, count, rgba}
  final: null, // its final images: {size, count, rgba}
  pick: 0, // which image of a batch is the main one
  batchLimit: { images: 16, reason: '' }, // the most images a run of the loaded model holds (worker)
  link: linkSettings(), // settings a link carries, applied when its model is ready (then null)
  playing: null, // the timer of "Play the scales"
  pendingPick: 0, // the link's image of a batch, picked when its run is done
  converting: false, // a conversion reports progress (its text replaces the download's)
  history: loadHistory(), // finished generations, newest first (see HISTORY_KEY)
  modelId: '', // what the loaded model is called in links and history: a catalogue id or its URL
  lastRun: null, // the settings of the running or last generation, for its history entry
  loading: null, // the load or convert request in progress: {msg, modelId, entry}
  loaded: null, // the request that loaded the model now ready (replayed by a fresh worker)
  cancelTimer: 0, // forces a cancel the worker has not answered (HARD_CANCEL_MS)
  restartNote: '', // why the worker was replaced, said when the model is ready again
  noClass: false, // the class filter matches no class: Generate is disabled
};

// Finished generations kept across visits: [{image (PNG data URL), model, class, class_name,
// seed, cfg, top_k, top_p, smooth, batch, pick, ms, backend, time}], newest first, at most
// HISTORY_MAX; when local storage is full the oldest are dropped (said once).
function loadHistory() {
  try {
    const items = JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]');
    return Array.isArray(items) ? items.filter((h) => h && typeof h.image === 'string').slice(0, HISTORY_MAX) : [];
  } catch (_) {
    return []; // unreadable or unavailable storage: a session-only history
  }
}

function saveHistory() {
  let dropped = 0;
  for (;;) {
    try {
      localStorage.setItem(HISTORY_KEY, JSON.stringify(state.history));
      break;
    } catch (e) {
      if (state.history.length <= 1) break; // storage unavailable: keep it for this session
      state.history.pop();
      dropped += 1;
    }
  }
  if (dropped && !state.historyFullSaid) {
    state.historyFullSaid = true;
    ui.historyNote.textContent = `This browser's storage for the page is full: the ${dropped} oldest history entries were dropped.`;
  }
}

function showHistory() {
  ui.history.replaceChildren(...state.history.map((h, i) => {
    const img = document.createElement('img');
    img.src = h.image;
    img.alt = `${h.class_name}, seed ${h.seed}`;
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.index = String(i);
    b.title = `${h.class_name} · seed ${h.seed} · CFG ${h.cfg} · top-k ${h.top_k} · top-p ${h.top_p}${h.batch > 1 ? ` · image ${h.pick + 1} of ${h.batch}` : ''} · ${h.model} · ${h.backend} · ${(h.ms / 1000).toFixed(2)} s · ${new Date(h.time).toLocaleString()}`;
    b.append(img);
    b.addEventListener('click', () => restoreHistory(i));
    const li = document.createElement('li');
    li.append(b);
    return li;
  }));
}

// Records the main image of a finished generation (replacing its entry when another image of
// the batch is picked).
function recordHistory(replace) {
  if (!state.lastRun || !state.final) return;
  const image = ui.output.toDataURL('image/png');
  const entry = { ...state.lastRun, image, pick: state.pick, time: Date.now() };
  if (replace && state.history[0]?.run === entry.run) state.history[0] = entry;
  else state.history.unshift(entry);
  state.history.length = Math.min(state.history.length, HISTORY_MAX);
  saveHistory();
  showHistory();
}

// Puts a history entry's settings in the form and its image on the canvas.
function restoreHistory(i) {
  const h = state.history[i];
  if (!h) return;
  ui.seed.value = String(h.seed);
  ui.cfg.value = String(h.cfg);
  ui.topK.value = String(h.top_k);
  ui.topP.value = String(h.top_p);
  ui.smooth.checked = Boolean(h.smooth);
  ui.batch.value = String(h.batch);
  const here = h.model === state.modelId;
  if (here && state.config && h.class < state.config.var.num_classes) {
    fillClasses(state.config.class_names);
    ui.classSelect.value = String(h.class);
  }
  const img = new Image();
  img.onload = () => {
    ui.output.width = img.width;
    ui.output.height = img.height;
    ui.output.getContext('2d').drawImage(img, 0, 0);
    state.haveImage = true;
    ui.download.disabled = false;
    setStatus(state.status.state === 'error' ? 'ready' : state.status.state,
      `From the history: ${h.class_name}, seed ${h.seed}${h.batch > 1 ? `, image ${h.pick + 1} of ${h.batch}` : ''}.`
      + `${here ? '' : ` It was made with ${h.model}, not the model loaded now.`}`);
  };
  img.src = h.image;
}

ui.clearHistory.addEventListener('click', () => {
  state.history = [];
  try { localStorage.removeItem(HISTORY_KEY); } catch (_) { /* nothing kept */ }
  ui.historyNote.textContent = '';
  showHistory();
});

// The sampling settings in the address bar (?class=&seed=&cfg=&top_k=&top_p=&smooth=&batch=&pick=),
// or null when it has none: a copied link reproduces an image on the same model.
// The link also records its model (`model`, the shipped one when absent) and, for a converted
// model, the start of its fingerprint (`fp`), so that a link opened on another model says so.
function linkSettings() {
  const q = new URLSearchParams(location.search);
  const names = ['class', 'seed', 'cfg', 'top_k', 'top_p', 'smooth', 'batch', 'pick'];
  if (!names.some((n) => q.has(n))) return null;
  const link = Object.fromEntries(names.filter((n) => q.has(n)).map((n) => [n, q.get(n)]));
  return { ...link, model: q.get('model') || 'fashion-mnist', fp: q.get('fp') || '' };
}

function setStatus(status, text) {
  state.status = { state: status, text };
  ui.status.dataset.state = status;
  ui.status.dataset.backend = state.backend;
  ui.status.textContent = text;
  const busy = status === 'busy' || status === 'loading';
  ui.generate.disabled = busy || !state.config || state.noClass;
  ui.cancel.disabled = !busy;
  ui.loadModel.disabled = busy;
  ui.modelSelect.disabled = busy;
  ui.openPth.disabled = busy;
  ui.confirmSource.disabled = busy;
  ui.inpaint.disabled = busy || !state.config || !state.editing;
  ui.modeEdit.disabled = busy || !state.config || (!state.haveImage && !editor.source);
  ui.upload.disabled = busy || !state.config;
  ui.beforeAfter.disabled = busy || !state.result;
  ui.useResult.disabled = busy || !state.result;
}

// Enters or leaves edit mode. The mask is only hidden on leaving, never cleared.
function setEditing(on) {
  state.editing = on;
  ui.mask.hidden = !on;
  ui.editControls.hidden = !on;
  ui.modeEdit.setAttribute('aria-pressed', String(on));
  ui.modeEdit.textContent = on ? 'Leave edit mode' : 'Edit this image';
  setStatus(state.status.state, state.status.text);
}

// Which of the edit's images the canvas shows (written to data-showing for tests).
function setShowing(which) {
  state.showing = which;
  ui.output.dataset.showing = which;
}

function showBefore(before) {
  state.before = before;
  ui.beforeAfter.setAttribute('aria-pressed', String(before));
  ui.beforeAfter.textContent = before ? 'Show after' : 'Show before';
  if (before) editor.drawSource(ui.output);
  else if (state.result) drawRgba(ui.output, state.result.data, state.result.width);
  setShowing(before ? 'before' : 'after');
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
  // An empty list must not leave Generate on: the select's value would be '' and read as 0.
  state.noClass = ui.classSelect.options.length === 0;
  ui.classEmpty.hidden = !state.noClass;
  ui.classEmpty.textContent = state.noClass ? `No class matches “${filter.trim()}”: change or clear the filter to pick one.` : '';
  setStatus(state.status.state, state.status.text);
}

function beginLoad(text) {
  state.config = null;
  state.converting = false;
  state.downloads.clear();
  state.notices.length = 0;
  ui.progress.hidden = false;
  ui.budget.hidden = true;
  ui.sourcePrompt.hidden = true;
  ui.modelInfo.textContent = '';
  ui.modelInfo.dataset.fingerprint = '';
  setStatus('loading', text);
}

// Sends a load or convert request and remembers it, so that a fresh worker can repeat it.
function request(msg) {
  state.loading = { msg, modelId: state.modelId, entry: state.entry };
  worker.postMessage(msg);
}

function loadModel(url, id = url) {
  state.modelId = id;
  beginLoad(`Loading the model from ${url}…`);
  // A model on another origin waits for the person's yes ('confirm-load').
  state.pending = { type: MSG.LOAD, url: new URL(url, location.href).href, backend: query.get('backend') || 'auto' };
  request({ ...state.pending, confirmed: false });
}

// --- The model picker ----------------------------------------------------------------------

const gb = (b) => (b >= 1e9 ? `${(b / 1e9).toFixed(1)} GB` : `${(b / 1e6).toFixed(b >= 1e7 ? 0 : 1)} MB`);

// The hub official checkpoints come from: ?hub=, else the settings field, else the catalog's.
function hubBase() {
  const given = ui.hubUrl.value.trim() || state.catalog.hub;
  return new URL(given.endsWith('/') ? given : `${given}/`, location.href).href;
}

// The backend to ask the worker for: the address's `?backend=`, else WebGPU for a model whose
// weights the CPU path cannot hold (even on a software adapter, which 'auto' passes over), else
// 'auto' (the worker's choice).
function backendFor(entry) {
  const asked = query.get('backend');
  if (asked) return asked;
  return entry && entry.weights_cpu_bytes > CPU_WEIGHTS_LIMIT ? 'webgpu' : 'auto';
}

// Why this browser cannot run `entry`, or '' when it can.
function cannotRun(entry) {
  if (entry.kind !== 'pth') return '';
  const cpuFits = entry.weights_cpu_bytes <= CPU_WEIGHTS_LIMIT;
  if (!state.adapter && !cpuFits) {
    return `needs WebGPU, which this browser does not offer: on the CPU its weights take ${gb(entry.weights_cpu_bytes)}, more than a WebAssembly page can address`;
  }
  return '';
}

function describeEntry(entry) {
  if (!entry) return 'A converted model directory at a URL (config.json and its weights).';
  const what = `${entry.classes} classes, ${entry.image_size}×${entry.image_size} px`;
  if (entry.kind !== 'pth') return `${entry.title}: ${what}, ${gb(entry.download_bytes)}, shipped with this page.`;
  const needs = state.adapter
    ? `about ${gb(entry.weights_gpu_bytes)} of GPU memory for its weights`
    : `about ${gb(entry.weights_cpu_bytes)} of memory for its weights on the CPU`;
  const why = cannotRun(entry);
  return `${entry.title}: ${what}. Downloads ${gb(entry.download_bytes)} once (${entry.vae}, ${entry.var}), `
    + `converts it here to ${entry.precision} and keeps ${gb(entry.stored_bytes)}; needs ${needs}.`
    + `${why ? ` This browser cannot run it: it ${why}.` : ''}`;
}

function fillPicker() {
  const options = state.catalog.models.map((m) => {
    const why = cannotRun(m);
    const size = m.kind === 'pth' ? ` (${gb(m.download_bytes)} download)` : '';
    const o = new Option(`${m.title}${size}`, m.id);
    o.disabled = Boolean(why);
    if (why) o.title = why;
    return o;
  });
  ui.modelSelect.replaceChildren(...options, new Option('A model directory by URL…', 'custom'));
}

// Puts `?name=value` in the address bar, so the link reproduces what is shown.
function setQuery(name, value) {
  const q = new URLSearchParams(location.search);
  if (value === null) q.delete(name);
  else q.set(name, value);
  history.replaceState(null, '', `${location.pathname}?${q}`);
}

function selectModel(id) {
  const entry = state.catalog.models.find((m) => m.id === id) || null;
  state.entry = entry;
  ui.modelSelect.value = entry ? entry.id : 'custom';
  ui.customModel.hidden = Boolean(entry);
  ui.modelEntry.textContent = describeEntry(entry);
  ui.sourcePrompt.hidden = true;
  if (!entry) return;
  setQuery('model', entry.id);
  const why = cannotRun(entry);
  if (why) return setStatus('error', `Error: ${entry.title} cannot run here: it ${why}.`);
  if (entry.kind !== 'pth') return loadModel(entry.url, entry.id);
  state.modelId = entry.id;
  beginLoad(`Looking for ${entry.title} in this browser's storage…`);
  // The worker loads it from storage when it was converted before, else asks to confirm.
  state.pending = { type: MSG.CONVERT, entry, from: { base: hubBase() }, backend: backendFor(entry) };
  request({ ...state.pending, confirmed: false });
}

// A download needs the person's yes: its size, its source, and a warning for an unknown source.
function askToConvert() {
  const { entry, from } = state.pending;
  const host = new URL(from.base).host;
  const trusted = from.base === state.trustedHub;
  ui.sourcePromptText.textContent = `${entry.title} is not in this browser yet. Converting it downloads `
    + `${gb(entry.download_bytes)} from ${host} and keeps ${gb(entry.stored_bytes)} here.`
    + `${trusted ? '' : ` ${host} is not the official hub: continue only if you trust it.`}`;
  ui.sourcePrompt.hidden = false;
  ui.progress.hidden = true;
  setStatus('confirm', `Waiting for your go-ahead to download ${entry.title}.`);
}

// A model directory on another origin: its origin and download size, then the person's yes.
function askToLoad({ origin, bytes }) {
  ui.sourcePromptText.textContent = `This model is on another site, ${origin}: loading it downloads `
    + `${bytes ? gb(bytes) : 'an amount the server does not state'} from there. Continue only if you trust it.`;
  ui.sourcePrompt.hidden = false;
  ui.progress.hidden = true;
  setStatus('confirm', `Waiting for your go-ahead to load a model from ${origin}.`);
}

ui.confirmSource.addEventListener('click', () => {
  if (!state.pending) return;
  beginLoad(state.pending.type === MSG.CONVERT
    ? `Converting ${state.pending.entry.title}…`
    : `Loading the model from ${state.pending.url}…`);
  request({ ...state.pending, confirmed: true });
});

// Two checkpoints from disk: the VQ-VAE (its name says so) and the transformer, matched to a
// catalog entry by the transformer's file name, else to the entry chosen in the picker.
function convertFiles(fileList) {
  const files = [...fileList].filter((f) => f.name.endsWith('.pth'));
  const vae = files.find((f) => /vae/i.test(f.name));
  const varFile = files.find((f) => f !== vae);
  if (files.length !== 2 || !vae || !varFile) {
    return setStatus('error', `Error: choose the two checkpoints together: the VQ-VAE (e.g. vae_ch160v4096z32.pth) and the transformer (e.g. var_d16.pth); got ${files.map((f) => f.name).join(', ') || 'no .pth file'}.`);
  }
  const official = state.catalog.models.filter((m) => m.kind === 'pth');
  const entry = official.find((m) => m.var === varFile.name) || (state.entry?.kind === 'pth' ? state.entry : null);
  if (!entry) {
    return setStatus('error', `Error: ${varFile.name} is not named like an official checkpoint: pick its model in the list first, then open the files.`);
  }
  state.entry = entry;
  state.modelId = entry.id;
  ui.modelSelect.value = entry.id;
  ui.customModel.hidden = true;
  setQuery('model', entry.id);
  ui.modelEntry.textContent = describeEntry(entry);
  beginLoad(`Converting ${entry.title} from ${vae.name} and ${varFile.name}…`);
  state.pending = null;
  request({
    type: MSG.CONVERT, entry, from: { vae, var: varFile }, confirmed: true, replace: true, backend: backendFor(entry),
  });
}

ui.openPth.addEventListener('change', () => {
  const files = ui.openPth.files;
  if (files.length) convertFiles(files);
  ui.openPth.value = '';
});
document.addEventListener('dragover', (e) => {
  if ([...e.dataTransfer.items].some((i) => i.kind === 'file')) e.preventDefault();
});
document.addEventListener('drop', (e) => {
  const pth = [...e.dataTransfer.files].filter((f) => f.name.endsWith('.pth'));
  if (!pth.length) return;
  e.preventDefault();
  if (state.status.state === 'busy' || state.status.state === 'loading') return;
  convertFiles(pth);
});
ui.modelSelect.addEventListener('change', () => {
  if (ui.modelSelect.value === 'custom') {
    state.entry = null;
    ui.customModel.hidden = false;
    ui.modelEntry.textContent = describeEntry(null);
    return;
  }
  selectModel(ui.modelSelect.value);
});
ui.hubUrl.addEventListener('change', () => {
  const value = ui.hubUrl.value.trim();
  setQuery('hub', value && value !== state.catalog.hub ? value : null);
});

// --- Batches, the scales, links ---------------------------------------------------------

// Image `i` of a batch laid out one image after another.
function imageOf({ size, rgba }, i) {
  const n = size * size * 4;
  return rgba.subarray(i * n, (i + 1) * n);
}

function drawGrid(images) {
  const side = Math.round(Math.sqrt(images.count));
  ui.grid.style.gridTemplateColumns = `repeat(${side}, 1fr)`;
  if (ui.grid.children.length !== images.count) {
    ui.grid.replaceChildren(...Array.from({ length: images.count }, (_, i) => {
      const c = document.createElement('canvas');
      c.dataset.index = String(i);
      c.title = `Image ${i + 1}: make it the main one`;
      c.className = ui.pixelated.checked ? '' : 'smooth';
      c.addEventListener('click', () => state.final && pickImage(i));
      return c;
    }));
  }
  [...ui.grid.children].forEach((c, i) => {
    drawRgba(c, imageOf(images, i), images.size);
    c.setAttribute('aria-current', String(i === state.pick));
  });
  ui.grid.hidden = false;
}

// Batches larger than the loaded model holds here (the worker's {images, reason}: wasm32's
// 4 GiB on the CPU, the largest buffer binding on WebGPU) cannot be picked, and say why.
function showBatchLimit(limit) {
  state.batchLimit = limit;
  for (const o of ui.batch.options) {
    o.disabled = Number(o.value) > limit.images;
    o.title = o.disabled ? `Too many for this model here: ${limit.reason}.` : '';
  }
  if (ui.batch.selectedOptions[0].disabled) {
    const fits = [...ui.batch.options].filter((o) => !o.disabled).pop();
    state.notices.push(`Batches of ${ui.batch.value} do not fit: ${limit.reason}; the batch is now ${fits.value}.`);
    ui.batch.value = fits.value;
  }
}

// Makes image `i` of the finished batch the main one: the canvas, its thumbnails, the link.
function pickImage(i) {
  if (!state.final || i < 0 || i >= state.final.count) return;
  state.pick = i;
  drawRgba(ui.output, imageOf(state.final, i), state.final.size);
  ui.output.dataset.scale = String(state.scales.length - 1);
  [...ui.grid.children].forEach((c, j) => c.setAttribute('aria-current', String(j === i)));
  [...ui.thumbs.querySelectorAll('canvas')].forEach((c, k) => drawRgba(c, imageOf(state.scales[k], i), state.scales[k].size));
  setQuery('pick', i ? String(i) : null);
  showScrubber();
  recordHistory(true);
}

function showScrubber() {
  if (!state.scales.length) return;
  ui.scrubber.max = String(state.scales.length - 1);
  ui.scrubber.value = ui.scrubber.max;
  ui.scaleLabel.textContent = scaleText(state.scales.length - 1);
  ui.scrub.hidden = false;
}

const scaleText = (k) => `${k + 1} of ${state.scales.length} (${state.scales[k].patch}×${state.scales[k].patch})`;

// The main image at scale `k` (the last is the final image).
function showScale(k) {
  const scale = state.scales[k];
  if (!scale) return;
  const last = k === state.scales.length - 1 && state.final;
  if (last) drawRgba(ui.output, imageOf(state.final, state.pick), state.final.size);
  else drawRgba(ui.output, imageOf(scale, state.pick), scale.size);
  ui.output.dataset.scale = String(k);
  ui.scrubber.value = String(k);
  ui.scaleLabel.textContent = scaleText(k);
}

function stopPlaying() {
  clearInterval(state.playing);
  state.playing = null;
  ui.playScales.textContent = 'Play the scales';
}

ui.scrubber.addEventListener('input', () => { stopPlaying(); showScale(Number(ui.scrubber.value)); });
ui.playScales.addEventListener('click', () => {
  if (state.playing) return stopPlaying();
  let k = 0;
  showScale(k);
  ui.playScales.textContent = 'Stop';
  state.playing = setInterval(() => {
    k += 1;
    if (k >= state.scales.length) return stopPlaying();
    showScale(k);
  }, 500);
});
ui.downloadScales.addEventListener('click', () => {
  if (!state.final) return;
  const size = state.final.size;
  const strip = document.createElement('canvas');
  strip.width = size * state.scales.length;
  strip.height = size;
  const ctx = strip.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  state.scales.forEach((scale, k) => {
    const one = document.createElement('canvas');
    const last = k === state.scales.length - 1;
    drawRgba(one, last ? imageOf(state.final, state.pick) : imageOf(scale, state.pick), last ? size : scale.size);
    ctx.drawImage(one, k * size, 0, size, size);
  });
  strip.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `var-class${ui.classSelect.value}-seed${ui.seed.value}-scales.png`;
    a.click();
    URL.revokeObjectURL(a.href);
  }, 'image/png');
});
ui.pixelated.addEventListener('change', () => {
  for (const c of [ui.output, ...ui.grid.children]) c.classList.toggle('smooth', !ui.pixelated.checked);
});
ui.copyLink.addEventListener('click', async () => {
  const href = location.href;
  try {
    await navigator.clipboard.writeText(href);
    setStatus(state.status.state, `${state.status.text} Link copied.`);
  } catch (_) {
    setStatus(state.status.state, `${state.status.text} Copy this link: ${href}`);
  }
});

// Applies the link's settings to the loaded model once: what it can, with a sentence for what
// it cannot. Resolves whether to generate right away (a link with a seed shows its image).
// A link for another model than the one that became ready stays pending (its image appears
// when its model is loaded) and says so; nothing of it is applied to the wrong model.
function applyLink(fingerprint) {
  const link = state.link;
  if (!link) return { generate: false, note: '' };
  if (link.model !== state.modelId) {
    return { generate: false, note: ` This link is for the model ${link.model}, not ${state.modelId}, the one loaded now: its image appears when ${link.model} is loaded.` };
  }
  state.link = null;
  const notes = []; // what of the link could not be applied: it does not generate then
  const warnings = []; // applied, but the image may differ
  const fp = link.fp.toLowerCase();
  if (fp && fingerprint && !fingerprint.startsWith(fp)) {
    warnings.push(`The link was made with another conversion of ${link.model} (fingerprint ${fp}…; this one is ${fingerprint.slice(0, fp.length)}…), so the same settings may not give the same image.`);
  }
  const n = state.config.var.num_classes;
  if ('class' in link) {
    const k = Number(link.class);
    if (Number.isInteger(k) && k >= 0 && k < n) {
      fillClasses(state.config.class_names);
      ui.classSelect.value = String(k);
    } else {
      notes.push(`The link's class ${link.class} is not one of this model's ${n} classes.`);
    }
  }
  const numbers = [['seed', ui.seed], ['cfg', ui.cfg], ['top_k', ui.topK], ['top_p', ui.topP]];
  for (const [name, input] of numbers) if (name in link && Number.isFinite(Number(link[name]))) input.value = link[name];
  if ('smooth' in link) ui.smooth.checked = link.smooth === '1';
  if ('batch' in link) {
    const option = [...ui.batch.options].find((o) => o.value === link.batch);
    if (!option) notes.push(`The link asks for ${link.batch} images per run; the page makes 1, 4, 9 or 16.`);
    else if (option.disabled) notes.push(`The link asks for ${link.batch} images per run, and here ${state.batchLimit.reason}.`);
    else ui.batch.value = link.batch;
  }
  state.pendingPick = Number(link.pick) || 0;
  const said = [...notes, ...warnings];
  return { generate: 'seed' in link && notes.length === 0, note: said.length ? ` ${said.join(' ')}` : '' };
}

// Enter generates, Escape cancels, R picks a random seed (not while typing in a text field).
document.addEventListener('keydown', (e) => {
  if (e.isComposing || e.ctrlKey || e.metaKey || e.altKey) return;
  const typing = e.target instanceof HTMLInputElement && ['text', 'search', 'url'].includes(e.target.type);
  if (e.key === 'Escape') {
    if (!ui.cancel.disabled) ui.cancel.click();
  } else if (e.key === 'Enter' && !(e.target instanceof HTMLButtonElement) && !typing) {
    if (!ui.generate.disabled) generate();
  } else if ((e.key === 'r' || e.key === 'R') && !typing && !(e.target instanceof HTMLInputElement && e.target.type === 'number')) {
    ui.randomSeed.click();
  }
});

function showStorage(models) {
  if (!models.length) {
    ui.storageList.replaceChildren('No converted models are kept in this browser.');
    return;
  }
  const total = models.reduce((a, m) => a + m.bytes, 0);
  const items = models.map((m) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = 'Remove';
    b.dataset.model = m.id;
    b.addEventListener('click', () => worker.postMessage({ type: MSG.FORGET, id: m.id }));
    const li = document.createElement('li');
    li.append(`${m.id}: ${gb(m.bytes)} `, b);
    return li;
  });
  const list = document.createElement('ul');
  list.append(...items);
  ui.storageList.replaceChildren(`Converted models kept in this browser (${gb(total)}):`, list);
}

function showProgress() {
  let loaded = 0;
  let total = 0;
  for (const d of state.downloads.values()) {
    loaded += d.loaded;
    total += d.total || d.loaded;
  }
  ui.progressBar.value = total ? loaded / total : 0;
  const mb = (d) => `${(d.loaded / 1e6).toFixed(1)}${d.total ? `/${(d.total / 1e6).toFixed(1)}` : ''} MB`;
  if (state.downloads.size <= 3) {
    ui.progressText.textContent = [...state.downloads].map(([f, d]) => `${f} ${mb(d)}`).join(', ');
    return;
  }
  // A sharded model: the total, how many files are done (and how many came from the cache),
  // and the file in flight.
  const all = [...state.downloads.values()];
  const done = all.filter((d) => d.total && d.loaded >= d.total);
  const fromCache = all.filter((d) => d.cached).length;
  const current = [...state.downloads].find(([, d]) => d.loaded > 0 && d.loaded < (d.total || Infinity));
  ui.progressText.textContent = `${(loaded / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB in all, `
    + `${done.length} of ${all.length} files${fromCache ? ` (${fromCache} from the cache)` : ''}`
    + `${current ? `; ${current[0]} ${mb(current[1])}` : ''}`;
}

const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;

// What a fresh worker repeats to have the model ready again: the request that loaded it (a
// converted official model comes back from storage, files a person opened included).
function replayable(loaded) {
  const msg = loaded.msg;
  if (msg.type === MSG.CONVERT) return { ...msg, from: { base: hubBase() }, confirmed: false, replace: false };
  return { ...msg, confirmed: true };
}

// Replaces the worker (a trap, or a cancel it did not answer) and reloads the model that was
// ready, saying `note` when it is ready again; with none loaded, says it and waits.
function restartWorker(note) {
  clearTimeout(state.cancelTimer);
  state.runOpen = false;
  worker.terminate();
  startWorker();
  const back = state.loaded;
  if (!back) {
    ui.progress.hidden = true;
    state.config = null;
    return setStatus('idle', `${note}. Pick a model to load.`);
  }
  reloadPrevious(back, note);
}

function reloadPrevious(back, note) {
  state.restartNote = note;
  state.modelId = back.modelId;
  state.entry = back.entry;
  if (back.entry) ui.modelSelect.value = back.entry.id;
  beginLoad(`${note}; loading ${back.modelId} again…`);
  request(replayable(back));
}

// The worker answered: a forced cancel is no longer needed.
function answered() {
  clearTimeout(state.cancelTimer);
  state.cancelTimer = 0;
}

// Adds scale `data.si` of the running run (the next in order): its picture on the canvas, a
// thumbnail, the status. A preview the preview worker could not decode shows the scale
// before it (or black), and its thumbnail says why.
function addScale(data) {
  const failed = data.type === MSG.PREVIEW_FAILED;
  const before = state.scales[state.scales.length - 1];
  const size = failed ? (before?.size ?? state.config.image_size) : data.size;
  const rgba = failed
    ? (before?.rgba ?? new Uint8ClampedArray(size * size * 4).fill(255).map((v, i) => (i % 4 === 3 ? v : 0)))
    : new Uint8ClampedArray(data.rgba);
  const count = failed ? (before?.count ?? 1) : data.count;
  const scale = { si: data.si, patch: data.patch ?? state.config.patch_nums[data.si], size, count, rgba };
  state.scales.push(scale);
  if (state.scales.length === 1) state.firstShownMs = performance.now() - state.runStart;
  drawRgba(ui.output, imageOf(scale, state.pick), size);
  if (count > 1) drawGrid(scale);
  ui.output.dataset.scale = String(data.si);
  // Large models preview a scale with a cheaper, smaller decode (worker: PREVIEW_LATENT).
  const preview = size < state.config.image_size;
  ui.output.dataset.preview = preview ? 'true' : 'false';
  const ms = data.ms ?? 0;
  state.scaleMs.push(ms);
  const li = document.createElement('li');
  const thumb = document.createElement('canvas');
  drawRgba(thumb, imageOf(scale, state.pick), size);
  const note = failed ? ` · preview not decoded: ${data.message}` : preview ? ` · ${size} px preview` : '';
  li.append(thumb, `${scale.patch}×${scale.patch} · ${ms.toFixed(0)} ms${note}`);
  ui.thumbs.append(li);
  const n = state.config.patch_nums.length;
  const shown = preview ? `: a ${size} px preview, the full ${state.config.image_size} px decode comes with the last scale` : '';
  setStatus('busy', `Scale ${data.si + 1} of ${n} (${scale.patch}×${scale.patch} tokens)${shown}…`);
}

// Ends the running run once its 'done' came and every scale is shown: the final image, the
// timings (from the click, as the page saw them), the history. A preview worker that failed
// mid-run leaves its scales unshown: they are shown as not decoded.
function finishRun() {
  const data = state.doneMsg;
  if (!data) return;
  const n = state.config.patch_nums.length;
  if (state.scales.length < n && !previewWorker) {
    for (let si = state.scales.length; si < n; si += 1) {
      addScale(state.arrived[si] || { type: MSG.PREVIEW_FAILED, id: data.id, si, message: 'the preview worker stopped' });
    }
  }
  if (state.scales.length < n) return;
  state.doneMsg = null;
  state.runOpen = false;
  const totalMs = performance.now() - state.runStart;
  state.final = { size: data.size, count: data.count, rgba: new Uint8ClampedArray(data.rgba) };
  if (data.count > 1) drawGrid(state.final);
  drawRgba(ui.output, imageOf(state.final, state.pick), data.size);
  ui.output.dataset.preview = 'false';
  state.haveImage = true;
  if (state.runKind === 'edit') {
    state.result = new ImageData(new Uint8ClampedArray(data.rgba), data.size, data.size);
    setShowing('after');
    showMask(false); // the result is what a person wants to see; the mask is kept
  }
  ui.download.disabled = false;
  const perImage = data.count > 1 ? `; ${(totalMs / data.count).toFixed(0)} ms per image (${data.count} in one batched run)` : '';
  const where = state.handedOver ? '; previews decoded in a second worker' : '';
  ui.timings.textContent = `First preview after ${state.firstShownMs.toFixed(0)} ms; total ${totalMs.toFixed(0)} ms${perImage}; per scale: ${state.scaleMs.map((m) => m.toFixed(0)).join(' / ')} ms${where}.`;
  showScrubber();
  if (state.runKind === 'generate' && state.lastRun?.run === data.id) {
    state.lastRun.ms = totalMs;
    recordHistory(false);
  }
  if (state.pendingPick) {
    const pick = state.pendingPick;
    state.pendingPick = 0;
    pickImage(pick);
  }
  setStatus('done', `${state.runKind === 'edit' ? 'Edited' : 'Done'} in ${(totalMs / 1000).toFixed(2)} s on ${state.backend === 'webgpu' ? 'WebGPU' : 'the CPU'}.`);
}

function onWorkerMessage({ data }) {
  if ([MSG.CANCELLED, MSG.LOAD_CANCELLED, MSG.DONE, MSG.ERROR, MSG.READY, MSG.CONFIRM, MSG.CONFIRM_LOAD].includes(data.type)) answered();
  switch (data.type) {
    case MSG.PROGRESS:
      state.downloads.set(data.file, data);
      if (!state.converting) showProgress();
      break;
    case MSG.NOTICE:
      state.notices.push(data.message);
      break;
    case MSG.CONFIRM:
      askToConvert();
      break;
    case MSG.CONFIRM_LOAD:
      askToLoad(data);
      break;
    case MSG.CONVERTING: {
      state.converting = true;
      ui.progress.hidden = false;
      ui.progressBar.value = data.bytes_total ? data.bytes_done / data.bytes_total : 0;
      const left = data.left_seconds === null ? '' : `, about ${Math.ceil(data.left_seconds)} s left`;
      ui.progressText.textContent = `Converting: ${data.tensors_done} of ${data.tensors_total} tensors, `
        + `${gb(data.bytes_done)} of ${gb(data.bytes_total)} read at ${gb(data.rate)}/s${left}; `
        + `${data.shards} shards (${gb(data.stored_bytes)}) kept; downloaded `
        + `${[...state.downloads].map(([f, d]) => `${f} ${gb(d.loaded)}${d.total ? ` of ${gb(d.total)}` : ''}`).join(', ')}`;
      break;
    }
    case MSG.STORAGE:
      showStorage(data.models);
      break;
    case MSG.LOAD_CANCELLED:
      ui.progress.hidden = true;
      // The model that was ready before this load comes back (the worker let go of it).
      if (state.loaded) reloadPrevious(state.loaded, `Cancelled: ${data.message}`);
      else setStatus('idle', `Cancelled: ${data.message}. Pick a model to load.`);
      break;
    case MSG.BUDGET: {
      const total = data.weights_bytes + data.kv_cache_bytes + data.activations_bytes;
      const where = data.backend === 'webgpu' ? 'GPU' : 'CPU';
      ui.budget.textContent = `Downloading ${mib(data.download_bytes)}; running it needs about ${mib(total)} of ${where} memory `
        + `(weights ${mib(data.weights_bytes)}, KV cache ${mib(data.kv_cache_bytes)}, activations ${mib(data.activations_bytes)}).`;
      ui.budget.hidden = false;
      break;
    }
    case MSG.READY: {
      if (previewsWanted && !state.previewBroken && data.backend === 'cpu' && data.full_previews
        && state.previewPaired !== worker) pairPreviewWorker();
      state.loaded = state.loading;
      state.config = data.config;
      state.backend = data.backend;
      ui.progress.hidden = true;
      fillClasses(state.config.class_names);
      ui.editClass.replaceChildren(new Option('none (unconditional)', ''),
        ...state.config.class_names.map((name, i) => new Option(`${i}: ${name}`, String(i))));
      editor.reset(state.config.image_size, state.config.fit);
      state.haveImage = false;
      state.result = null;
      setEditing(false);
      // A catalog entry's recommended sampling (the reference demo's) wins over the defaults
      // a converted config.json carries.
      const s = { ...state.config.sampling, ...(state.entry?.sampling || {}) };
      ui.cfg.value = s.cfg;
      ui.topK.value = s.top_k;
      ui.topP.value = s.top_p;
      ui.smooth.checked = s.more_smooth;
      ui.nativeSize.textContent = `Native size ${state.config.image_size}×${state.config.image_size} px.`;
      showBatchLimit(data.batch);
      // Links carry the start of a converted model's fingerprint (see linkSettings).
      setQuery('fp', data.fingerprint ? data.fingerprint.slice(0, 16) : null);
      const auto = applyLink(data.fingerprint || '');
      const lines = [...(data.reason ? [`Running on the CPU: ${data.reason}.`] : []), ...state.notices];
      ui.note.hidden = lines.length === 0;
      ui.note.textContent = lines.join(' ');
      const where = state.backend === 'webgpu' ? 'WebGPU' : 'the CPU';
      ui.modelInfo.dataset.fingerprint = data.fingerprint || '';
      ui.modelInfo.textContent = data.fingerprint
        ? `Fingerprint ${data.fingerprint} (SHA-256 of manifest.json; var convert prints the same for the same files).`
        : '';
      if (data.converted) {
        ui.modelInfo.textContent += ` Downloaded and converted in ${data.conversion_s.toFixed(1)} s; `
          + `WebAssembly memory peaked at ${(data.conversion_wasm_bytes / 2 ** 20).toFixed(0)} MiB during the conversion.`;
      }
      const from = data.converted ? ', converted here and kept' : data.stored ? ", from this browser's storage" : data.cached ? ', from the cache' : '';
      const restarted = state.restartNote ? `${state.restartNote}. ` : '';
      state.restartNote = '';
      setStatus('ready', `${restarted}Ready: ${state.config.name} (${state.config.var.num_classes} classes, ${state.config.image_size} px) on ${where}${from}.${auto.note}`);
      if (auto.generate) generate();
      break;
    }
    case MSG.SCALE:
    case MSG.PREVIEW_FAILED:
      // A stale message from an earlier run, or a late preview of one that was cancelled.
      if (data.id !== state.runId || !state.runOpen) return;
      // Handed-over previews come from the preview worker, and may arrive after the scales
      // that follow them: every scale is shown in order, and the run is done after the last.
      state.arrived[data.si] = data;
      while (state.arrived[state.scales.length]) addScale(state.arrived[state.scales.length]);
      finishRun();
      break;
    case MSG.MASK: {
      const mask = new Uint8Array(data.mask);
      editor.setMask(mask);
      showMask(true);
      const generated = mask.reduce((n, m) => n + m, 0);
      setStatus('ready', `Loaded the mask ${data.name}: ${generated} of ${mask.length} pixels generate.`);
      break;
    }
    case MSG.SOURCE:
      if (data.id !== state.runId) return;
      drawRgba(ui.reconstruction, data.rgba, data.size);
      ui.sourceFigure.hidden = false;
      ui.editNote.textContent = `${state.sourceNote} The mask: ${data.description}.`;
      break;
    case MSG.DONE:
      if (data.id !== state.runId) return;
      state.doneMsg = data;
      finishRun();
      break;
    case MSG.CANCELLED:
      if (data.id !== state.runId) return;
      state.runOpen = false;
      setStatus('ready', `Cancelled. The canvas shows the last finished scale${state.runKind === 'edit' ? '; the mask is kept' : ''}.`);
      break;
    case MSG.CACHE_CLEARED:
      setStatus(state.status.state, `${state.status.text} Cached models cleared.`);
      break;
    case MSG.ERROR:
      if (data.fatal || data.phase === 'generate' || data.phase === 'edit') state.runOpen = false;
      if (data.fatal) {
        restartWorker(`Error: ${data.message}. The model's code stopped (a WebAssembly trap), so the worker was replaced`);
        break;
      }
      ui.progress.hidden = true;
      if (data.phase === 'load') state.config = null;
      setStatus('error', `Error: ${data.message}${data.phase === 'edit' ? ' (the mask is kept)' : ''}`);
      break;
    default:
      break;
  }
}

// Pairs the preview worker (started the first time) with the inference worker: a channel
// between them, one end each. A fresh inference worker (restartWorker) is paired again when
// its model is ready.
function pairPreviewWorker() {
  if (!previewWorker) {
    previewWorker = new Worker(new URL('./preview-worker.js', import.meta.url), { type: 'module' });
    previewWorker.onmessage = ({ data }) => {
      if (data.id === state.runId) state.handedOver = true;
      onWorkerMessage({ data });
    };
    // A preview worker that fails is not replaced: the inference worker decodes its own
    // previews again, and the scales it had handed over are shown as not decoded.
    previewWorker.onerror = (e) => {
      e.preventDefault();
      previewWorker.terminate();
      previewWorker = null;
      state.previewPaired = null;
      state.previewBroken = true;
      worker.postMessage({ type: MSG.PREVIEW_PORT, port: null });
      finishRun();
    };
  }
  const channel = new MessageChannel();
  previewWorker.postMessage({ type: MSG.PREVIEW_PORT, port: channel.port1 }, [channel.port1]);
  worker.postMessage({ type: MSG.PREVIEW_PORT, port: channel.port2 }, [channel.port2]);
  state.previewPaired = worker;
}

function startWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = onWorkerMessage;
  // An uncaught error or trap in the worker: its state is unknown, so it is replaced.
  worker.onerror = (e) => {
    e.preventDefault();
    restartWorker(`Error: the worker failed (${e.message || 'no message'}), so it was replaced`);
  };
}
startWorker();

// The sampling settings of the form, or null (with an error state) when the seed is bad.
function samplingParams() {
  const seed = Number(ui.seed.value);
  if (!Number.isInteger(seed) || seed < 0) {
    setStatus('error', 'Error: the seed must be a whole number ≥ 0.');
    return null;
  }
  return {
    cfg: Number(ui.cfg.value), top_k: Number(ui.topK.value), top_p: Number(ui.topP.value),
    more_smooth: ui.smooth.checked, seed,
  };
}

function startRun(kind) {
  state.runId += 1;
  state.runOpen = true;
  state.runKind = kind;
  state.runStart = performance.now();
  state.firstShownMs = 0;
  state.handedOver = false;
  state.arrived = [];
  state.doneMsg = null;
  state.scaleMs = [];
  state.scales = [];
  state.final = null;
  state.pick = 0;
  stopPlaying();
  ui.scrub.hidden = true;
  ui.grid.hidden = true;
  ui.grid.replaceChildren();
  ui.thumbs.replaceChildren();
  ui.output.dataset.scale = '';
  ui.download.disabled = true;
  ui.timings.textContent = '';
}

function generate() {
  if (!state.config || state.status.state === 'busy' || state.status.state === 'loading') return;
  if (state.noClass || ui.classSelect.value === '') return;
  const params = samplingParams();
  if (!params) return;
  const label = Number(ui.classSelect.value);
  const count = Number(ui.batch.value);
  if (count > state.batchLimit.images) {
    return setStatus('ready', `A batch of ${count} does not fit: ${state.batchLimit.reason}.`);
  }
  startRun('generate');
  if (state.editing) setEditing(false);
  state.result = null;
  // The address bar now reproduces this run.
  for (const [name, value] of [['class', label], ['seed', params.seed], ['cfg', params.cfg], ['top_k', params.top_k],
    ['top_p', params.top_p], ['smooth', params.more_smooth ? 1 : 0], ['batch', count]]) setQuery(name, String(value));
  setQuery('pick', null);
  state.lastRun = {
    run: state.runId, model: state.modelId, class: label, class_name: state.config.class_names[label] ?? String(label),
    seed: params.seed, cfg: params.cfg, top_k: params.top_k, top_p: params.top_p, smooth: params.more_smooth,
    batch: count, backend: state.backend, ms: 0,
  };
  setStatus('busy', count > 1 ? `Generating ${count} images…` : 'Generating…');
  worker.postMessage({ type: MSG.GENERATE, id: state.runId, label, labels: Array(count).fill(label), params });
}
ui.generate.addEventListener('click', generate);

ui.inpaint.addEventListener('click', () => {
  if (!state.config || !state.editing || state.status.state === 'busy') return;
  if (!editor.source) return setStatus('error', 'Error: there is no source image: generate or upload one.');
  const mode = ui.editMode.value;
  const { mask, painted } = editor.generateMask(mode);
  if (!painted) {
    const what = mode === 'outpaint' ? 'the region to keep' : 'the region to regenerate';
    return setStatus('error', `Error: the mask is empty: paint ${what} on the image.`);
  }
  if (mode === 'outpaint' && painted === mask.length) {
    return setStatus('error', 'Error: the whole image is painted to be kept, so out-painting has nothing to generate.');
  }
  const chosen = ui.editClass.value;
  if (mode === 'edit' && chosen === '') {
    return setStatus('error', 'Error: editing redraws the painted region as a class: pick one under “Class for the generated part”.');
  }
  const params = samplingParams();
  if (!params) return;
  const label = chosen === '' ? state.config.var.num_classes : Number(chosen);
  startRun('edit');
  showBefore(false);
  state.result = null;
  const source = new Uint8ClampedArray(editor.source.data);
  setStatus('busy', 'Encoding the source…');
  worker.postMessage({ type: MSG.EDIT, id: state.runId, source: source.buffer, mask: mask.buffer, label, params, keepOriginal: ui.keepOriginal.checked },
    [source.buffer, mask.buffer]);
});

ui.modeEdit.addEventListener('click', () => {
  if (state.editing) return setEditing(false);
  // A finished image on the canvas becomes the source; otherwise the last source stays.
  if (state.haveImage && state.showing !== 'before' && editor.takeSource(ui.output)) {
    state.sourceNote = 'Source: the generated image.';
    ui.editNote.textContent = state.sourceNote;
    state.result = null;
    ui.sourceFigure.hidden = true;
  }
  setEditing(true);
});

ui.upload.addEventListener('change', async () => {
  const file = ui.upload.files[0];
  ui.upload.value = ''; // the same file can be chosen again
  if (!file || !state.config) return;
  try {
    const how = await editor.loadFile(file);
    editor.drawSource(ui.output);
    state.haveImage = false;
    state.result = null;
    ui.thumbs.replaceChildren();
    setShowing('before');
    ui.sourceFigure.hidden = true;
    state.sourceNote = `Source: ${how}.`;
    ui.editNote.textContent = state.sourceNote;
    setEditing(true);
    setStatus('ready', `Loaded ${file.name}: paint the mask, then run the edit.`);
  } catch (e) {
    setStatus('error', `Error: ${e.message}.`);
  }
});

for (const radio of document.querySelectorAll('input[name="tool"]')) {
  radio.addEventListener('change', () => radio.checked && editor.setTool(radio.value));
}
ui.brushSize.addEventListener('input', () => {
  editor.brush = Number(ui.brushSize.value);
  ui.brushSizeValue.textContent = `${ui.brushSize.value} px`;
});
ui.maskClear.addEventListener('click', () => { editor.clear(); showMask(true); });
ui.maskInvert.addEventListener('click', () => { editor.invert(); showMask(true); });
// A mask file is what `var inpaint --mask` reads (picture::mask_of): saved in the source's
// geometry, and read back by the same Rust function in the worker, so page and CLI agree.
ui.maskExport.addEventListener('click', async () => {
  const { width, height } = editor.maskGeometry();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await editor.maskPng());
  a.download = `var-mask-${width}x${height}.png`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
});
ui.maskImport.addEventListener('change', async () => {
  const file = ui.maskImport.files[0];
  ui.maskImport.value = ''; // the same file can be chosen again
  if (!file || !state.config) return;
  if (file.size > MAX_UPLOAD_BYTES) {
    return setStatus('error', `Error: ${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the page reads masks up to ${MAX_UPLOAD_BYTES / 2 ** 20} MB.`);
  }
  const bytes = await file.arrayBuffer();
  worker.postMessage({ type: MSG.READ_MASK, name: file.name, bytes, size: state.config.image_size, ...editor.maskGeometry() }, [bytes]);
});
ui.beforeAfter.addEventListener('click', () => showBefore(!state.before));
ui.useResult.addEventListener('click', () => {
  showBefore(false);
  if (!editor.takeSource(ui.output)) return;
  state.result = null;
  state.sourceNote = 'Source: the last edit’s result.';
  ui.editNote.textContent = state.sourceNote;
  setStatus('ready', 'The result is the new source; the mask is kept.');
});
// A soft cancel first (the worker stops before its next scale or shard); one it does not
// answer within HARD_CANCEL_MS (a long scale, a stuck download) replaces the worker.
ui.cancel.addEventListener('click', () => {
  worker.postMessage({ type: MSG.CANCEL });
  if (state.cancelTimer) return;
  state.cancelTimer = setTimeout(() => {
    state.cancelTimer = 0;
    restartWorker('Cancelled: the worker did not stop within a second, so it was replaced');
  }, HARD_CANCEL_MS);
});
ui.randomSeed.addEventListener('click', () => { ui.seed.value = String(Math.floor(Math.random() * 2 ** 31)); });
ui.classFilter.addEventListener('input', () => state.config && fillClasses(state.config.class_names, ui.classFilter.value));
ui.download.addEventListener('click', () => {
  ui.output.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `var-class${ui.classSelect.value}-seed${ui.seed.value}.png`;
    a.click();
    URL.revokeObjectURL(a.href);
  }, 'image/png');
});
ui.loadModel.addEventListener('click', () => {
  setQuery('model', ui.modelUrl.value || DEFAULT_MODEL);
  loadModel(ui.modelUrl.value || DEFAULT_MODEL);
});
ui.clearCache.addEventListener('click', () => worker.postMessage({ type: MSG.CLEAR_CACHE }));

async function fetchCatalog(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the model catalogue ${url} answered ${response.status}`);
  const catalog = await response.json();
  if (catalog.format !== 'var-web-catalog' || !Array.isArray(catalog.models)) {
    throw new Error(`${url} is not a model catalogue (format var-web-catalog)`);
  }
  return catalog;
}

// The picker from the catalogue, then the model the link names (?model=: a catalogue id, or
// a model directory's URL as before), else the shipped model.
async function start() {
  try {
    const adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
    state.adapter = adapter ? adapter.limits : null;
  } catch (_) {
    state.adapter = null;
  }
  const shipped = await fetchCatalog(SHIPPED_CATALOG);
  state.trustedHub = shipped.hub;
  const other = query.get('catalog');
  state.catalog = other ? await fetchCatalog(new URL(other, location.href).href) : shipped;
  ui.hubUrl.value = query.get('hub') || state.catalog.hub;
  fillPicker();
  worker.postMessage({ type: MSG.STORAGE });
  const requested = query.get('model') || 'fashion-mnist';
  if (state.catalog.models.some((m) => m.id === requested)) return selectModel(requested);
  if (!requested.includes('/')) {
    return setStatus('error', `Error: the link names model '${requested}', which the catalogue does not list; pick one.`);
  }
  ui.modelSelect.value = 'custom';
  ui.customModel.hidden = false;
  ui.modelUrl.value = requested;
  ui.modelEntry.textContent = describeEntry(null);
  return loadModel(requested);
}

ui.modelUrl.value = DEFAULT_MODEL;
showHistory();
start().catch((e) => setStatus('error', `Error: ${e.message}.`));
