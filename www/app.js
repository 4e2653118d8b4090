// The page: controls, canvas and thumbnails. All model work is in worker.js (see protocol.js).
import { MSG } from './protocol.js';
import { Editor } from './editor.js';

// The model trained here on Fashion-MNIST (committed; see the README's training section).
const DEFAULT_MODEL = 'models/fashion-mnist/';
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
  maskClear: $('mask-clear'), maskInvert: $('mask-invert'), beforeAfter: $('before-after'),
  useResult: $('use-result'), inpaint: $('inpaint'), editNote: $('edit-note'), mask: $('mask'),
  sourceFigure: $('source-figure'), reconstruction: $('reconstruction'), maskVisible: $('mask-visible'),
};
const editor = new Editor(ui.mask);
function showMask(on) {
  ui.maskVisible.checked = on;
  ui.mask.classList.toggle('veiled', !on);
}
editor.onPaint = () => showMask(true);
ui.maskVisible.addEventListener('change', () => showMask(ui.maskVisible.checked));

const query = new URLSearchParams(location.search);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
// Everything the page knows, in one place. The DOM shows it (`data-state`, `data-backend`,
// `data-showing` are written for people and tests) but is never read back as state.
const state = {
  config: null, // the loaded model's config.json
  backend: '', // 'webgpu' | 'cpu'
  status: { state: 'loading', text: '' }, // what #status shows
  runId: 0, // the id of the running or last run; stale worker messages carry older ids
  runKind: 'generate', // what the running or last run was: 'generate' | 'edit'
  scaleMs: [], // per-scale times of the running or last run
  downloads: new Map(), // file → {loaded, total, cached} during a load
  notices: [], // notices from the worker during a load (e.g. a file that could not be cached)
  editing: false, // edit mode: the mask is shown and painted over the output
  haveImage: false, // the output canvas holds a finished image
  result: null, // the last edit's result (ImageData), for the before/after toggle
  showing: 'after', // whether the canvas shows the edit's source ('before') or result
  before: false, // the before/after toggle is pressed
  sourceNote: '', // how the edit's source came to be, for #edit-note
};

function setStatus(status, text) {
  state.status = { state: status, text };
  ui.status.dataset.state = status;
  ui.status.dataset.backend = state.backend;
  ui.status.textContent = text;
  const busy = status === 'busy' || status === 'loading';
  ui.generate.disabled = busy || !state.config;
  ui.cancel.disabled = status !== 'busy';
  ui.loadModel.disabled = busy;
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
}

function loadModel(url) {
  state.config = null;
  state.downloads.clear();
  state.notices.length = 0;
  ui.progress.hidden = false;
  ui.budget.hidden = true;
  setStatus('loading', `Loading the model from ${url}…`);
  worker.postMessage({ type: MSG.LOAD, url: new URL(url, location.href).href, backend: query.get('backend') || 'auto' });
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

worker.onmessage = ({ data }) => {
  switch (data.type) {
    case MSG.PROGRESS:
      state.downloads.set(data.file, data);
      showProgress();
      break;
    case MSG.NOTICE:
      state.notices.push(data.message);
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
      state.config = data.config;
      state.backend = data.backend;
      ui.progress.hidden = true;
      fillClasses(state.config.class_names);
      ui.editClass.replaceChildren(new Option('none (unconditional)', ''),
        ...state.config.class_names.map((name, i) => new Option(`${i}: ${name}`, String(i))));
      editor.reset(state.config.image_size);
      state.haveImage = false;
      state.result = null;
      setEditing(false);
      const s = state.config.sampling;
      ui.cfg.value = s.cfg;
      ui.topK.value = s.top_k;
      ui.topP.value = s.top_p;
      ui.smooth.checked = s.more_smooth;
      const lines = [...(data.reason ? [`Running on the CPU: ${data.reason}.`] : []), ...state.notices];
      ui.note.hidden = lines.length === 0;
      ui.note.textContent = lines.join(' ');
      const where = state.backend === 'webgpu' ? 'WebGPU' : 'the CPU';
      setStatus('ready', `Ready: ${state.config.name} (${state.config.var.num_classes} classes, ${state.config.image_size} px) on ${where}${data.cached ? ', from the cache' : ''}.`);
      break;
    }
    case MSG.SCALE: {
      if (data.id !== state.runId) return; // a stale message from an earlier run
      drawRgba(ui.output, data.rgba, data.size);
      ui.output.dataset.scale = String(data.si);
      // Large models preview a scale with a cheaper, smaller decode (worker: PREVIEW_LATENT).
      const preview = data.size < state.config.image_size;
      ui.output.dataset.preview = preview ? 'true' : 'false';
      state.scaleMs.push(data.ms);
      const li = document.createElement('li');
      const thumb = document.createElement('canvas');
      drawRgba(thumb, data.rgba, data.size);
      li.append(thumb, `${data.patch}×${data.patch} · ${data.ms.toFixed(0)} ms${preview ? ` · ${data.size} px preview` : ''}`);
      ui.thumbs.append(li);
      const n = state.config.patch_nums.length;
      const shown = preview ? `: a ${data.size} px preview, the full ${state.config.image_size} px decode comes with the last scale` : '';
      setStatus('busy', `Scale ${data.si + 1} of ${n} (${data.patch}×${data.patch} tokens)${shown}…`);
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
      drawRgba(ui.output, data.rgba, data.size);
      ui.output.dataset.preview = 'false';
      state.haveImage = true;
      if (state.runKind === 'edit') {
        state.result = new ImageData(new Uint8ClampedArray(data.rgba), data.size, data.size);
        setShowing('after');
        showMask(false); // the result is what a person wants to see; the mask is kept
      }
      ui.download.disabled = false;
      ui.timings.textContent = `First preview after ${state.scaleMs[0].toFixed(0)} ms; total ${data.totalMs.toFixed(0)} ms; per scale: ${state.scaleMs.map((m) => m.toFixed(0)).join(' / ')} ms.`;
      setStatus('done', `${state.runKind === 'edit' ? 'Edited' : 'Done'} in ${(data.totalMs / 1000).toFixed(2)} s on ${state.backend === 'webgpu' ? 'WebGPU' : 'the CPU'}.`);
      break;
    case MSG.CANCELLED:
      if (data.id !== state.runId) return;
      setStatus('ready', `Cancelled. The canvas shows the last finished scale${state.runKind === 'edit' ? '; the mask is kept' : ''}.`);
      break;
    case MSG.CACHE_CLEARED:
      setStatus(state.status.state, `${state.status.text} Cached models cleared.`);
      break;
    case MSG.ERROR:
      ui.progress.hidden = true;
      if (data.phase === 'load') state.config = null;
      setStatus('error', `Error: ${data.message}${data.phase === 'edit' ? ' (the mask is kept)' : ''}`);
      break;
    default:
      break;
  }
};
worker.onerror = (e) => setStatus('error', `Error: the worker failed: ${e.message}`);

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
  state.runKind = kind;
  state.scaleMs = [];
  ui.thumbs.replaceChildren();
  ui.output.dataset.scale = '';
  ui.download.disabled = true;
  ui.timings.textContent = '';
}

ui.generate.addEventListener('click', () => {
  if (!state.config || state.status.state === 'busy') return;
  const params = samplingParams();
  if (!params) return;
  const label = Number(ui.classSelect.value);
  startRun('generate');
  if (state.editing) setEditing(false);
  state.result = null;
  setStatus('busy', 'Generating…');
  worker.postMessage({ type: MSG.GENERATE, id: state.runId, label, params });
});

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
  worker.postMessage({ type: MSG.EDIT, id: state.runId, source: source.buffer, mask: mask.buffer, label, params },
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
ui.beforeAfter.addEventListener('click', () => showBefore(!state.before));
ui.useResult.addEventListener('click', () => {
  showBefore(false);
  if (!editor.takeSource(ui.output)) return;
  state.result = null;
  state.sourceNote = 'Source: the last edit’s result.';
  ui.editNote.textContent = state.sourceNote;
  setStatus('ready', 'The result is the new source; the mask is kept.');
});
ui.cancel.addEventListener('click', () => worker.postMessage({ type: MSG.CANCEL }));
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
ui.loadModel.addEventListener('click', () => loadModel(ui.modelUrl.value || DEFAULT_MODEL));
ui.clearCache.addEventListener('click', () => worker.postMessage({ type: MSG.CLEAR_CACHE }));

const requested = query.get('model');
ui.modelUrl.value = requested || DEFAULT_MODEL;
loadModel(ui.modelUrl.value);
