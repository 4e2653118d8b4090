// The inference worker: loads the model (WebGPU first, CPU fallback) and runs generations.
// All model work happens here; the page only draws. See protocol.js for the messages.
import init, {
  VarModel, ShardedLoad, largestTensor, largestShardedTensor, fingerprint,
} from './pkg/var_web.js';
import { MSG, MODEL_FILES, MANIFEST_FILE, CACHE_NAME } from './protocol.js';
import {
  Cancelled, convertToStorage, forgetAll, forgetStored, listStored, readStored, storedModel,
} from './convert.js';

let model = null;
let running = null; // id of the generation in progress
let loadCancelled = false; // a cancel arrived during a load or conversion

const post = (msg, transfer = []) => self.postMessage(msg, transfer);

// The package is built with WebAssembly SIMD (.cargo/config.toml: burn-flex's kernels use it).
// A browser without it would fail inside instantiation with an opcode error; this says why.
// The probe is a one-function module that returns i8x16.popcnt(i8x16.splat(0)).
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
async function initWasm() {
  if (!WebAssembly.validate(SIMD_PROBE)) {
    throw new Error('this browser lacks WebAssembly SIMD, which the page needs (Chrome 91, Firefox 89, Safari 16.4 and later have it)');
  }
  await init();
}

async function openCache() {
  try {
    return await caches.open(CACHE_NAME);
  } catch (_) {
    return null; // no Cache API (e.g. opaque origin): download every time
  }
}

// Fetches one file with progress, from the Cache API when present; stores it there otherwise.
// `key` is the cache entry (a shard's includes its checksum, so a new model at the same URL
// never reads an old shard).
async function fetchCached(url, file, key = url) {
  const cache = await openCache();
  const hit = cache && (await cache.match(key));
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    post({ type: MSG.PROGRESS, file, loaded: bytes.length, total: bytes.length, cached: true });
    return { bytes, cached: true };
  }
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${file}: the server answered ${response.status} ${response.statusText} for ${url}`);
  }
  const total = Number(response.headers.get('content-length')) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    post({ type: MSG.PROGRESS, file, loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    bytes.set(c, offset);
    offset += c.length;
  }
  if (total && loaded !== total) {
    throw new Error(`${file}: the download stopped at ${loaded} of ${total} bytes`);
  }
  if (cache) {
    try {
      await cache.put(key, new Response(bytes));
    } catch (e) {
      // QuotaExceededError and friends: keep the model in memory and say why it is not cached.
      const why = e.name === 'QuotaExceededError'
        ? "the browser's storage quota for this site is full (Clear cached models frees it)"
        : `${e.name}: ${e.message}`;
      post({ type: MSG.NOTICE, message: `${file} is not cached, so the next visit downloads it again: ${why}.` });
    }
  }
  return { bytes, cached: false };
}

const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

// The adapter's name when it is a software renderer (SwiftShader, lavapipe, llvmpipe, or one
// the browser marks as a fallback), else ''. Measured here, such an adapter runs the shipped
// model in 24 to 58 s an image against 0.5 s on the CPU path, so it is not chosen by default.
function softwareAdapter(adapter) {
  const info = adapter.info || {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  if (/swiftshader|lavapipe|llvmpipe|softpipe/i.test(name)) return name;
  return info.isFallbackAdapter || adapter.isFallbackAdapter ? name || 'a fallback adapter' : '';
}

// Why WebGPU cannot or should not run this model here, or '' when it can: no API, no adapter,
// a software adapter (unless `preference` is 'webgpu'), or a tensor larger than the adapter can
// bind. `largest()` asks wasm for the model's largest tensor as a WebGPU device would hold it
// ({name, bytes}); it reads the headers or the manifest, never the weights.
async function webgpuProblem(largest, preference) {
  if (!('gpu' in navigator)) return 'this browser does not expose WebGPU (navigator.gpu is missing)';
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return `requesting a WebGPU adapter failed: ${e.message}`;
  }
  if (!adapter) return 'no WebGPU adapter is available (requestAdapter() returned null)';
  const software = softwareAdapter(adapter);
  if (software && preference !== 'webgpu') {
    return `the WebGPU adapter (${software}) is a software renderer, slower than the CPU path; ?backend=webgpu uses it anyway`;
  }
  const limit = Math.min(adapter.limits.maxStorageBufferBindingSize, adapter.limits.maxBufferSize);
  const { name, bytes } = largest();
  if (bytes > limit) {
    return `tensor ${name} needs ${mib(bytes)} but this GPU binds at most ${mib(limit)} (maxStorageBufferBindingSize/maxBufferSize)`;
  }
  return '';
}

// The largest storage binding of the WebGPU device the model runs on (the device is opened with
// the adapter's limits), or 0 on the CPU path: what a batch's largest buffer must fit.
async function bindingLimit(backend) {
  if (backend !== 'webgpu') return 0;
  const adapter = await navigator.gpu.requestAdapter();
  return adapter ? Math.min(adapter.limits.maxStorageBufferBindingSize, adapter.limits.maxBufferSize) : 0;
}

// The one fallback path, for models in three files and sharded ones: WebGPU unless `reason`
// already says why not, then the CPU when WebGPU fails to start (an error named
// WebGpuUnavailable by wasm). Any other error, a bad file say, fails the same way on both
// backends, so it is not retried. `loadOn(backend)` resolves to what it loaded.
async function withFallback(reason, loadOn) {
  if (!reason) {
    try {
      return { loaded: await loadOn('webgpu'), backend: 'webgpu', reason: '' };
    } catch (e) {
      if (e.name !== 'WebGpuUnavailable') throw e;
      reason = e.message;
    }
  }
  return { loaded: await loadOn('cpu'), backend: 'cpu', reason };
}

// The manifest of a sharded model, or null for a model in three files. From the network
// first (a model may have been replaced), else from the cache (offline reloads).
async function fetchManifest(url) {
  const href = new URL(MANIFEST_FILE, url).href;
  const cache = await openCache();
  try {
    const response = await fetch(href, { cache: 'no-cache' });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`${MANIFEST_FILE}: the server answered ${response.status} ${response.statusText}`);
    const text = await response.text();
    if (cache) await cache.put(href, new Response(text)).catch(() => {});
    return text;
  } catch (e) {
    const hit = cache && (await cache.match(href));
    if (hit) return hit.text();
    throw e;
  }
}

// Where a sharded model's files come from: a server (through the Cache API; a shard's cache
// key includes its checksum, so a new model at the same URL never reads an old shard), or a
// model converted into the browser's storage.
function serverFiles(url) {
  const key = (shard) => `${new URL(shard.file, url).href}?sha256=${shard.sha256}`;
  return {
    config: () => fetchCached(new URL('config.json', url).href, 'config.json'),
    shard: (shard) => fetchCached(new URL(shard.file, url).href, shard.file, key(shard)),
    drop: async (shard) => {
      const cache = await openCache();
      if (cache) await cache.delete(key(shard));
    },
  };
}

function storedFiles(dir) {
  const read = async (file) => {
    const bytes = await readStored(dir, file);
    post({ type: MSG.PROGRESS, file, loaded: bytes.length, total: bytes.length, cached: true });
    return { bytes, cached: true };
  };
  return { config: () => read('config.json'), shard: (shard) => read(shard.file), drop: async () => {} };
}

// Reads every shard and hands it to wasm one at a time, which checks it and puts its tensors
// on the device; neither side keeps a shard after that. A shard that fails its check is
// dropped from the cache, so a reload downloads it again.
async function addShards(loader, manifest, files) {
  let cached = true;
  for (const [i, shard] of manifest.shards.entries()) {
    if (loadCancelled) throw new Cancelled();
    const file = await files.shard(shard);
    cached &&= file.cached;
    try {
      loader.addShard(i, file.bytes);
    } catch (e) {
      await files.drop(shard);
      throw e;
    }
  }
  return cached;
}

// Opens a shard-by-shard load on `backend`, shows its memory budget and the files to come.
async function openSharded(configJson, manifestText, manifest, backend) {
  const loader = await ShardedLoad.open(configJson, manifestText, backend); // checks both files
  const budget = JSON.parse(loader.budget());
  const downloadBytes = manifest.shards.reduce((a, s) => a + s.bytes, 0);
  post({ type: MSG.BUDGET, ...budget, download_bytes: downloadBytes, backend });
  // Every shard's size is known up front, so the page's total is right from the start.
  for (const shard of manifest.shards) post({ type: MSG.PROGRESS, file: shard.file, loaded: 0, total: shard.bytes });
  return loader;
}

// Loads a sharded model from `files` (serverFiles or storedFiles); `extra` goes into READY.
async function loadSharded(files, preference, manifestText, extra = {}) {
  const manifest = JSON.parse(manifestText);
  const configFile = await files.config();
  const configJson = new TextDecoder().decode(configFile.bytes);
  const reason = preference === 'cpu'
    ? 'the CPU was requested (?backend=cpu)'
    : await webgpuProblem(() => largestShardedTensor(manifestText, 'webgpu'), preference);
  // Each shard's tensors go to the device as the shard arrives, so the device is opened
  // before the download.
  const loaded = await withFallback(reason, async (backend) => {
    const loader = await openSharded(configJson, manifestText, manifest, backend);
    try {
      const cached = await addShards(loader, manifest, files);
      return { model: loader.finish(), cached };
    } catch (e) {
      try { loader.free(); } catch (_) { /* `finish` already took it */ }
      throw e;
    }
  });
  model = loaded.loaded.model;
  post({
    type: MSG.READY,
    backend: loaded.backend,
    reason: loaded.reason,
    config: JSON.parse(model.configJson()),
    batch: JSON.parse(model.batchLimit(await bindingLimit(loaded.backend))),
    cached: loaded.loaded.cached && configFile.cached,
    fingerprint: fingerprint(manifestText),
    ...extra,
  });
}

// An official model (a catalog entry of kind 'pth'): from storage when a conversion of it
// finished before, else converted from `from` ({base} of a hub, or {vae, var} Files) when
// the person confirmed the download (`confirmed`), else the page is asked to confirm.
async function loadOfficial({ entry, from, confirmed, replace, backend }) {
  await initWasm();
  // Files a person opened replace what is stored; a hub's are the same files every time.
  let dir = replace ? null : await storedModel(entry.id);
  if (!dir && !confirmed) {
    post({ type: MSG.CONFIRM, id: entry.id, base: from.base || null });
    return;
  }
  let extra = { stored: true };
  if (!dir) {
    const converted = await convertToStorage(entry, from,
      (p) => post(p.conversion ? { type: MSG.CONVERTING, ...p } : { type: MSG.PROGRESS, ...p }),
      () => loadCancelled);
    dir = converted.dir;
    extra = { converted: true, conversion_s: converted.seconds, conversion_wasm_bytes: converted.wasmBytes };
    post({ type: MSG.STORAGE, models: await listStored() });
  }
  const manifestText = new TextDecoder().decode(await readStored(dir, MANIFEST_FILE));
  try {
    await loadSharded(storedFiles(dir), backend, manifestText, extra);
  } catch (e) {
    // A model in storage that does not load (damaged, or from an older build) is removed,
    // so the next try converts it afresh.
    if (e.name !== 'Cancelled' && e.name !== 'WebGpuUnavailable') {
      await forgetStored(entry.id);
      post({ type: MSG.STORAGE, models: await listStored() });
    }
    throw e;
  }
}

async function load(url, preference) {
  await initWasm();
  const manifest = await fetchManifest(url);
  if (manifest !== null) return loadSharded(serverFiles(url), preference, manifest);
  const [configFile, vqvaeFile, varFile] = await Promise.all(
    MODEL_FILES.map((f) => fetchCached(new URL(f, url).href, f)),
  );
  const configJson = new TextDecoder().decode(configFile.bytes);
  const reason = preference === 'cpu'
    ? 'the CPU was requested (?backend=cpu)'
    : await webgpuProblem(() => largestTensor(vqvaeFile.bytes, varFile.bytes, 'webgpu'), preference);
  const loaded = await withFallback(reason,
    (backend) => VarModel.load(configJson, vqvaeFile.bytes, varFile.bytes, backend));
  model = loaded.loaded;
  post({
    type: MSG.READY,
    backend: loaded.backend,
    reason: loaded.reason,
    config: JSON.parse(model.configJson()),
    batch: JSON.parse(model.batchLimit(await bindingLimit(loaded.backend))),
    cached: configFile.cached && vqvaeFile.cached && varFile.cached,
  });
}

// Runs a generation, or an edit when `edit` ({source, mask}) is given; both stream scales.
async function run({ id, label, labels, params }, edit = null) {
  running = id;
  const start = performance.now();
  // `rgba` holds `count` images of size², one after another (a batch).
  const onScale = (si, patch, pixels, size, ms) => {
    const copy = new Uint8ClampedArray(pixels);
    const count = copy.length / (size * size * 4);
    post({ type: MSG.SCALE, id, si, patch, size, ms, count, rgba: copy.buffer }, [copy.buffer]);
  };
  try {
    const rgba = edit
      ? await model.edit(new Uint8Array(edit.source), new Uint8Array(edit.mask), label, params,
        (pixels, size, description) => {
          const copy = new Uint8ClampedArray(pixels);
          post({ type: MSG.SOURCE, id, size, description, rgba: copy.buffer }, [copy.buffer]);
        }, onScale, Boolean(edit.keepOriginal))
      : await model.generateBatch(Uint32Array.from(labels || [label]), params, onScale);
    const count = edit ? 1 : (labels || [label]).length;
    const size = Math.round(Math.sqrt(rgba.length / 4 / count));
    post({ type: MSG.DONE, id, size, count, totalMs: performance.now() - start, rgba: rgba.buffer }, [rgba.buffer]);
  } catch (e) {
    const message = e && e.message ? e.message : String(e);
    if (e && e.name === 'Cancelled') post({ type: MSG.CANCELLED, id });
    else post({ type: MSG.ERROR, phase: edit ? 'edit' : 'generate', message });
  } finally {
    running = null;
  }
}

self.onmessage = async ({ data }) => {
  switch (data.type) {
    case MSG.LOAD:
    case MSG.CONVERT:
      try {
        model = null;
        loadCancelled = false;
        if (data.type === MSG.LOAD) await load(data.url, data.backend);
        else await loadOfficial(data);
      } catch (e) {
        if (e && e.name === 'Cancelled') post({ type: MSG.LOAD_CANCELLED, message: e.message });
        else post({ type: MSG.ERROR, phase: 'load', message: e && e.message ? e.message : String(e) });
      }
      break;
    case MSG.STORAGE:
      try {
        await initWasm();
        post({ type: MSG.STORAGE, models: await listStored() });
      } catch (_) {
        post({ type: MSG.STORAGE, models: [] });
      }
      break;
    case MSG.FORGET:
      await forgetStored(data.id);
      post({ type: MSG.STORAGE, models: await listStored() });
      break;
    case MSG.GENERATE:
    case MSG.EDIT: {
      const phase = data.type === MSG.EDIT ? 'edit' : 'generate';
      if (!model) post({ type: MSG.ERROR, phase, message: 'no model is loaded' });
      else if (running !== null) post({ type: MSG.ERROR, phase, message: 'a generation is already running' });
      else run(data, data.type === MSG.EDIT ? data : null);
      break;
    }
    case MSG.CANCEL:
      if (model && running !== null) model.cancel();
      else loadCancelled = true;
      break;
    case MSG.CLEAR_CACHE:
      await caches.delete(CACHE_NAME);
      await forgetAll().catch(() => {});
      post({ type: MSG.CACHE_CLEARED });
      post({ type: MSG.STORAGE, models: [] });
      break;
    default:
      post({ type: MSG.ERROR, phase: 'generate', message: `unknown message type '${data.type}'` });
  }
};
