// The inference worker: loads the model (WebGPU first, CPU fallback) and runs generations.
// All model work happens here; the page only draws. See protocol.js for the messages.
import init, {
  VarModel, ShardedLoad, largestTensor, largestShardedTensor, fingerprint, checkManifest, readMask,
} from './pkg/var_web.js';
import { MSG, MODEL_FILES, MANIFEST_FILE, CACHE_NAME } from './protocol.js';
import {
  Cancelled, convertToStorage, forgetAll, forgetStored, listStored, readStored, storedModel,
} from './convert.js';

let model = null;
let running = null; // id of the generation in progress
let loadCancelled = false; // a cancel arrived during a load or conversion
let loadAbort = new AbortController(); // aborts the downloads of the load in progress
// Cache keys this load read or wrote whose bytes no check has passed yet: a failed load
// deletes them, so nothing unverified is used twice (see `verified` and `evictUnverified`).
const unverified = new Set();

const post = (msg, transfer = []) => self.postMessage(msg, transfer);

// The preview worker (preview-worker.js), when the page gave one: runs of a model whose
// one-image previews are full decodes of f̂ (a small model) hand their previews to it, so they
// are decoded on another core while this worker samples the next scale. `previewFiles` are the model's files for it (only
// a model loaded from its three files; `fullPreviews` models are small), `previewToken` names
// the model sent last, and `previewReady` says the preview worker has that one loaded.
let previewPort = null;
let previewFiles = null;
let previewToken = 0;
let previewReady = false;

function sendPreviewModel() {
  previewToken += 1;
  previewReady = false;
  if (!previewPort) return;
  if (!previewFiles) {
    previewPort.postMessage({ type: MSG.PREVIEW_MODEL, token: previewToken, configJson: null });
    return;
  }
  const vqvae = previewFiles.vqvae.slice();
  const weights = previewFiles.var.slice();
  previewPort.postMessage({
    type: MSG.PREVIEW_MODEL, token: previewToken, configJson: previewFiles.configJson, vqvae, var: weights,
  }, [vqvae.buffer, weights.buffer]);
}

function setPreviewPort(port) {
  previewPort?.close();
  previewPort = port;
  if (port) {
    port.onmessage = ({ data }) => {
      if (data.token !== previewToken) return; // about a model replaced since
      previewReady = data.type === MSG.PREVIEW_READY;
    };
  }
  sendPreviewModel();
}

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

// A network failure caused by a cancel is the cancel, not an error.
async function cancellable(promise) {
  try {
    return await promise;
  } catch (e) {
    if (loadCancelled || (e && e.name === 'AbortError')) throw new Cancelled('the load was cancelled');
    throw e;
  }
}

// What identifies one version of a file on a server: its ETag, else its modification time and
// length. '' when the server gives neither (then the file is never taken from the cache).
function validator(headers) {
  const etag = headers.get('etag');
  if (etag) return `etag ${etag}`;
  const modified = headers.get('last-modified');
  const length = headers.get('content-length');
  return modified && length ? `modified ${modified}, ${length} bytes` : '';
}

// Fetches one file with progress, from the Cache API when `verify` lets it, else from the
// network (and stores it in the cache). `key` is the cache entry; `verify` is
//   'checksum': the key names the file's SHA-256 (a shard, or a config.json the manifest pins):
//               a hit is used, and wasm checks the bytes before anything trusts them;
//   'revalidate': a hit is used only if the server's validator (HEAD) still matches the one
//               stored with it, so a model republished at the same URL is downloaded again;
//   'none':     never from the cache (a config.json no manifest pins).
// `expected` (bytes, or 0): a download longer than that is cut off, and a shorter one refused.
async function fetchCached(url, file, { key = url, verify = 'revalidate', expected = 0 } = {}) {
  const cache = await openCache();
  let current = '';
  if (verify === 'revalidate') {
    const head = await cancellable(fetch(url, { method: 'HEAD', cache: 'no-store', signal: loadAbort.signal }));
    if (!head.ok) throw new Error(`${file}: the server answered ${head.status} ${head.statusText} for ${url}`);
    current = validator(head.headers);
  }
  const hit = cache && verify !== 'none' && (await cache.match(key));
  if (hit && (verify === 'checksum' || (current && hit.headers.get('x-var-validator') === current))) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    unverified.add(key);
    post({ type: MSG.PROGRESS, file, loaded: bytes.length, total: bytes.length, cached: true });
    return { bytes, cached: true, key };
  }
  const response = await cancellable(fetch(url, { cache: 'no-store', signal: loadAbort.signal }));
  if (!response.ok) {
    throw new Error(`${file}: the server answered ${response.status} ${response.statusText} for ${url}`);
  }
  const announced = Number(response.headers.get('content-length')) || 0;
  const total = expected || announced;
  const tooLong = (n) => new Error(`${file}: the server sent ${n} bytes or more, more than the ${expected} the manifest lists; the download was stopped`);
  if (expected && announced > expected) throw tooLong(announced);
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    if (loadCancelled) {
      reader.cancel().catch(() => {});
      throw new Cancelled('the load was cancelled');
    }
    const { done, value } = await cancellable(reader.read());
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (expected && loaded > expected) {
      reader.cancel().catch(() => {});
      throw tooLong(loaded);
    }
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
  const stored = validator(response.headers);
  if (cache && verify !== 'none' && (verify === 'checksum' || stored)) {
    try {
      const headers = verify === 'checksum' ? {} : { 'x-var-validator': stored };
      await cache.put(key, new Response(bytes, { headers }));
      unverified.add(key);
    } catch (e) {
      // QuotaExceededError and friends: keep the model in memory and say why it is not cached.
      const why = e.name === 'QuotaExceededError'
        ? "the browser's storage quota for this site is full (Clear cached models frees it)"
        : `${e.name}: ${e.message}`;
      post({ type: MSG.NOTICE, message: `${file} is not cached, so the next visit downloads it again: ${why}.` });
    }
  }
  return { bytes, cached: false, key };
}

// The files whose bytes wasm has now checked (or that loaded as a model) stay cached.
function verified(...files) {
  for (const f of files) unverified.delete(f.key);
}

// After a failed load: nothing it read or wrote unchecked stays in the cache.
async function evictUnverified() {
  const cache = await openCache();
  if (cache) await Promise.all([...unverified].map((k) => cache.delete(k).catch(() => {})));
  unverified.clear();
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

// A manifest's text and what wasm made of it: checkManifest validates it and writes it back
// out, so JavaScript only ever reads a manifest Rust has checked, and checks it once.
function readManifest(text) {
  return { text, manifest: JSON.parse(checkManifest(text)) }; // throws why it is unusable
}

// The manifest of a sharded model ({text, manifest}), or null for a model in three files.
// Always from the network (a model may have been replaced; its shards and config are pinned
// by it), checked by wasm before anything reads it.
async function fetchManifest(url) {
  const href = new URL(MANIFEST_FILE, url).href;
  const response = await cancellable(fetch(href, { cache: 'no-store', signal: loadAbort.signal }));
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${MANIFEST_FILE}: the server answered ${response.status} ${response.statusText}`);
  return readManifest(await cancellable(response.text()));
}

// Where a sharded model's files come from: a server (through the Cache API; a shard's cache
// key includes its checksum, so a new model at the same URL never reads an old shard), or a
// model converted into the browser's storage.
function serverFiles(url, manifest) {
  const key = (file, sha256) => `${new URL(file, url).href}?sha256=${sha256}`;
  const pinned = manifest.config_sha256;
  return {
    // A manifest written before config.json's checksum was in it does not pin the config: it
    // is then always downloaded, never taken from the cache.
    config: () => fetchCached(new URL('config.json', url).href, 'config.json', pinned
      ? { key: key('config.json', pinned), verify: 'checksum' }
      : { verify: 'none' }),
    shard: (shard) => fetchCached(new URL(shard.file, url).href, shard.file,
      { key: key(shard.file, shard.sha256), verify: 'checksum', expected: shard.bytes }),
  };
}

function storedFiles(dir) {
  const read = async (file) => {
    const bytes = await readStored(dir, file);
    post({ type: MSG.PROGRESS, file, loaded: bytes.length, total: bytes.length, cached: true });
    return { bytes, cached: true };
  };
  return { config: () => read('config.json'), shard: (shard) => read(shard.file) };
}

// Reads every shard and hands it to wasm one at a time, which checks it (size, SHA-256) and
// puts its tensors on the device; neither side keeps a shard after that. A shard that fails
// its check stays unverified, so the failed load evicts it and a reload downloads it again.
async function addShards(loader, manifest, files) {
  let cached = true;
  for (const [i, shard] of manifest.shards.entries()) {
    if (loadCancelled) throw new Cancelled('the load was cancelled');
    const file = await files.shard(shard);
    cached &&= file.cached;
    loader.addShard(i, file.bytes);
    verified(file);
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
async function loadSharded(files, preference, { text: manifestText, manifest }, extra = {}) {
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
  verified(configFile); // ShardedLoad.open checked it against the manifest
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
    await loadSharded(storedFiles(dir), backend, readManifest(manifestText), extra);
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

// The bytes a model directory at `url` downloads: its manifest's shards and config, or the
// three files' Content-Length (HEAD). 0 when the server does not say.
async function downloadSize(url) {
  try {
    return await listedSize(url);
  } catch (e) {
    if (e.name === 'Cancelled') throw e;
    return 0; // the server does not say (or refuses other origins: the load then says so)
  }
}

async function listedSize(url) {
  const sharded = await fetchManifest(url);
  const files = sharded === null ? MODEL_FILES : ['config.json'];
  const heads = await Promise.all(files.map((f) => cancellable(
    fetch(new URL(f, url).href, { method: 'HEAD', cache: 'no-store', signal: loadAbort.signal }))));
  const listed = heads.reduce((a, h) => a + (Number(h.headers.get('content-length')) || 0), 0);
  const shards = sharded === null ? 0 : sharded.manifest.shards.reduce((a, s) => a + s.bytes, 0);
  return listed + shards;
}

// A model directory on another origin is loaded only once the person said yes (`confirmed`),
// having seen that origin and the download's size.
async function load(url, preference, confirmed) {
  await initWasm();
  const origin = new URL(url).origin;
  if (origin !== self.location.origin && !confirmed) {
    post({ type: MSG.CONFIRM_LOAD, url, origin, bytes: await downloadSize(url) });
    return;
  }
  const sharded = await fetchManifest(url);
  if (sharded !== null) return loadSharded(serverFiles(url, sharded.manifest), preference, sharded);
  // Three files, each revalidated against the server, so a republished model is never mixed
  // from old and new files; they count as verified once they load together.
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
  verified(configFile, vqvaeFile, varFile);
  previewFiles = loaded.backend === 'cpu' && model.fullPreviews()
    ? { configJson, vqvae: vqvaeFile.bytes, var: varFile.bytes }
    : null;
  sendPreviewModel();
  post({
    type: MSG.READY,
    backend: loaded.backend,
    reason: loaded.reason,
    config: JSON.parse(model.configJson()),
    batch: JSON.parse(model.batchLimit(await bindingLimit(loaded.backend))),
    cached: configFile.cached && vqvaeFile.cached && varFile.cached,
    full_previews: previewFiles !== null,
  });
}

// A trap (a wasm panic, an out-of-memory abort): the module's state is undefined afterwards, so
// the page replaces this worker (`fatal`).
const isTrap = (e) => e instanceof WebAssembly.RuntimeError;

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
  const count = edit ? 1 : (labels || [label]).length;
  const port = previewReady ? previewPort : null;
  const onLatent = port
    ? (si, patch, fhat, side, ms) => port.postMessage({ type: MSG.LATENT, id, si, patch, side, ms, count, fhat: fhat.buffer }, [fhat.buffer])
    : undefined;
  try {
    const rgba = edit
      ? await model.edit(new Uint8Array(edit.source), new Uint8Array(edit.mask), label, params,
        (pixels, size, description) => {
          const copy = new Uint8ClampedArray(pixels);
          post({ type: MSG.SOURCE, id, size, description, rgba: copy.buffer }, [copy.buffer]);
        }, onScale, Boolean(edit.keepOriginal), onLatent)
      : await model.generateBatch(Uint32Array.from(labels || [label]), params, onScale, onLatent);
    const size = Math.round(Math.sqrt(rgba.length / 4 / count));
    post({ type: MSG.DONE, id, size, count, totalMs: performance.now() - start, rgba: rgba.buffer }, [rgba.buffer]);
  } catch (e) {
    const message = e && e.message ? e.message : String(e);
    if (e && e.name === 'Cancelled') post({ type: MSG.CANCELLED, id });
    else post({ type: MSG.ERROR, phase: edit ? 'edit' : 'generate', message, fatal: isTrap(e) });
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
        previewFiles = null;
        sendPreviewModel(); // none until this load is done
        loadCancelled = false;
        loadAbort = new AbortController();
        unverified.clear();
        if (data.type === MSG.LOAD) await load(data.url, data.backend, data.confirmed);
        else await loadOfficial(data);
      } catch (e) {
        if (e && e.name !== 'Cancelled' && e.name !== 'WebGpuUnavailable') await evictUnverified();
        if (e && e.name === 'Cancelled') post({ type: MSG.LOAD_CANCELLED, message: e.message });
        else post({ type: MSG.ERROR, phase: 'load', message: e && e.message ? e.message : String(e), fatal: isTrap(e) });
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
      else {
        loadCancelled = true;
        loadAbort.abort();
      }
      break;
    case MSG.READ_MASK:
      try {
        const mask = readMask(new Uint8Array(data.bytes), data.size, data.width, data.height, data.border);
        post({ type: MSG.MASK, name: data.name, mask: mask.buffer }, [mask.buffer]);
      } catch (e) {
        const why = e && e.message ? e.message : String(e);
        post({ type: MSG.ERROR, phase: 'mask', message: `${data.name}: ${why}`, fatal: isTrap(e) });
      }
      break;
    case MSG.PREVIEW_PORT:
      setPreviewPort(data.port);
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
