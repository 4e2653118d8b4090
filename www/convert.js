// Official checkpoints into a model in the browser's storage, in the worker: the two .pth
// files are read by ranges (from a server that honours Range, from a File, or from a copy
// streamed into storage when the server ignores Range), converted tensor by tensor by wasm
// (PthConverter: the code `var convert` runs), and each finished shard is written to the
// origin-private file system (OPFS) at once. manifest.json is written last, so a model
// directory without one is an interrupted conversion and is never loaded.
import init, { PthConverter, fingerprint } from './pkg/var_web.js';
import { MANIFEST_FILE } from './protocol.js';

const ROOT = 'var-web-models'; // OPFS: ROOT/<model id>/{config.json, manifest.json, shards}
const DOWNLOADS = 'var-web-downloads'; // OPFS: whole checkpoints from servers without Range

export class Cancelled extends Error {
  constructor(message = 'the conversion was cancelled; nothing of it was kept') {
    super(message);
    this.name = 'Cancelled';
  }
}

const opfs = async () => {
  if (!navigator.storage || !navigator.storage.getDirectory) {
    throw new Error('this browser has no origin-private file system (navigator.storage.getDirectory), so converted models cannot be kept');
  }
  return navigator.storage.getDirectory();
};

async function modelsDir(create = true) {
  return (await opfs()).getDirectoryHandle(ROOT, { create });
}

// The model directory of `id` if its conversion finished, else null.
export async function storedModel(id) {
  try {
    const dir = await (await modelsDir()).getDirectoryHandle(id);
    await dir.getFileHandle(MANIFEST_FILE);
    return dir;
  } catch (_) {
    return null;
  }
}

export async function readStored(dir, name) {
  const file = await (await dir.getFileHandle(name)).getFile();
  return new Uint8Array(await file.arrayBuffer());
}

// Every finished model in storage: [{id, bytes, fingerprint}].
export async function listStored() {
  const out = [];
  let root;
  try {
    root = await modelsDir(false);
  } catch (_) {
    return out;
  }
  for await (const [id, dir] of root.entries()) {
    if (dir.kind !== 'directory') continue;
    try {
      const text = new TextDecoder().decode(await readStored(dir, MANIFEST_FILE));
      const manifest = JSON.parse(text);
      out.push({ id, bytes: manifest.shards.reduce((a, s) => a + s.bytes, 0), fingerprint: fingerprint(text) });
    } catch (_) { /* an interrupted conversion: not a model */ }
  }
  return out;
}

export async function forgetStored(id) {
  const root = await modelsDir();
  await root.removeEntry(id, { recursive: true }).catch(() => {});
}

export async function forgetAll() {
  const root = await opfs();
  await root.removeEntry(ROOT, { recursive: true }).catch(() => {});
  await root.removeEntry(DOWNLOADS, { recursive: true }).catch(() => {});
}

// Writes `bytes` as `name` in `dir` through a synchronous handle (workers only), so the bytes
// are on disk when this returns. Quota errors say what to do.
async function writeStored(dir, name, bytes) {
  const handle = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  try {
    handle.truncate(0);
    const written = handle.write(bytes, { at: 0 });
    if (written !== bytes.length) throw new Error(`only ${written} of ${bytes.length} bytes were written`);
    handle.flush();
  } catch (e) {
    if (e.name === 'QuotaExceededError') {
      throw new Error(`${name}: the browser's storage for this site is full (Clear cached models frees it, or free disk space), so the converted model cannot be kept`);
    }
    throw new Error(`${name}: writing it to the browser's storage failed: ${e.message}`);
  } finally {
    handle.close();
  }
}

// --- Sources: a checkpoint read by ranges -----------------------------------------------

// A File (from <input type=file> or a drop): `File.slice()` read synchronously.
function fileSource(file) {
  const reader = new FileReaderSync();
  return {
    name: file.name,
    size: file.size,
    read: (offset, length) => new Uint8Array(reader.readAsArrayBuffer(file.slice(offset, offset + length))),
    close: async () => {},
  };
}

// A server that answers single `Range: bytes=START-END` requests with 206: each read is one
// synchronous request (allowed in a worker; the converter reads ahead in 1 MiB windows).
function rangeSource(name, url, size, onBytes) {
  return {
    name,
    size,
    read: (offset, length) => {
      const xhr = new XMLHttpRequest();
      xhr.open('GET', url, false);
      xhr.responseType = 'arraybuffer';
      xhr.setRequestHeader('Range', `bytes=${offset}-${offset + length - 1}`);
      try {
        xhr.send();
      } catch (e) {
        throw new Error(`the transfer failed (${e.message}): the connection dropped or the server refused`);
      }
      if (xhr.status !== 206) throw new Error(`the server answered ${xhr.status} to a range request`);
      onBytes(length);
      return new Uint8Array(xhr.response);
    },
    close: async () => {},
  };
}

// A checkpoint copied whole into storage (for servers that ignore Range), read back by ranges.
async function storedCopySource(name, handle, fileHandle, dir) {
  const size = handle.getSize();
  return {
    name,
    size,
    read: (offset, length) => {
      const buf = new Uint8Array(length);
      const n = handle.read(buf, { at: offset });
      if (n !== length) throw new Error(`the stored copy ended at byte ${offset + n}`);
      return buf;
    },
    close: async () => {
      handle.close();
      await dir.removeEntry(fileHandle.name).catch(() => {});
    },
  };
}

const describe = (url, e) => `${url} could not be fetched (${e.message}): the server is unreachable or does not allow this page's origin (CORS)`;

// Opens `file` under `base` as a source: probes with a one-byte range to learn whether the
// server honours Range and how large the file is; a server that ignores Range streams the
// file once into storage (memory holds one chunk), which is then read by ranges.
async function serverSource(base, file, progress, isCancelled) {
  const url = new URL(file, base).href;
  let response;
  try {
    response = await fetch(url, { headers: { Range: 'bytes=0-0' } });
  } catch (e) {
    throw new Error(`${file}: ${describe(url, e)}`);
  }
  if (response.status === 404) throw new Error(`${file}: the server has no such file (404 at ${url})`);
  if (!response.ok) throw new Error(`${file}: the server answered ${response.status} ${response.statusText} for ${url}`);
  const type = response.headers.get('content-type') || '';
  if (type.includes('text/html')) {
    await response.body?.cancel();
    throw new Error(`${file}: ${url} answered with a web page, not a checkpoint (a login page or an error page?)`);
  }
  if (response.status === 206) {
    await response.body?.cancel();
    // `bytes 0-0/SIZE`; a cross-origin server must expose Content-Range for it to be read,
    // else the size comes from the headers of a plain request, cancelled before its body.
    let size = Number(/\/(\d+)\s*$/.exec(response.headers.get('content-range') || '')?.[1]);
    if (!size) {
      const controller = new AbortController();
      const whole = await fetch(response.url, { signal: controller.signal });
      size = Number(whole.headers.get('content-length'));
      controller.abort();
    }
    if (!size) throw new Error(`${file}: the server does not say how large the file is (no Content-Range or Content-Length)`);
    progress({ file, loaded: 0, total: size });
    let loaded = 0;
    return rangeSource(file, response.url, size, (n) => {
      loaded = Math.min(size, loaded + n);
      progress({ file, loaded, total: size });
    });
  }
  // 200: the whole file is coming. Stream it into storage, then read it from there.
  const total = Number(response.headers.get('content-length')) || 0;
  const dir = await (await opfs()).getDirectoryHandle(DOWNLOADS, { create: true });
  const fileHandle = await dir.getFileHandle(`${file}.part`, { create: true });
  const handle = await fileHandle.createSyncAccessHandle();
  let loaded = 0;
  try {
    handle.truncate(0);
    const reader = response.body.getReader();
    for (;;) {
      if (isCancelled()) {
        await reader.cancel();
        throw new Cancelled();
      }
      const { done, value } = await reader.read();
      if (done) break;
      handle.write(value, { at: loaded });
      loaded += value.length;
      progress({ file, loaded, total, note: 'the server ignores Range: downloading it whole first' });
    }
    handle.flush();
    if (total && loaded !== total) throw new Error(`${file}: the download stopped at ${loaded} of ${total} bytes`);
  } catch (e) {
    handle.close();
    await dir.removeEntry(fileHandle.name).catch(() => {});
    if (e.name === 'QuotaExceededError') throw new Error(`${file}: the browser's storage for this site is full while downloading it`);
    throw e;
  }
  return storedCopySource(file, handle, fileHandle, dir);
}

// --- The conversion ----------------------------------------------------------------------

const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

// Converts `entry` (a catalog entry of kind 'pth') from `from` ({base} for a server, or
// {vae: File, var: File}) into storage. `progress(p)` gets download and conversion progress;
// `isCancelled()` is polled between tensors. Resolves to {dir, manifestText, fingerprint}.
// Only one tab converts a model at a time (a Web Lock per model).
export async function convertToStorage(entry, from, progress, isCancelled) {
  const run = () => convert(entry, from, progress, isCancelled);
  if (!navigator.locks) return run();
  return navigator.locks.request(`var-web-convert:${entry.id}`, { ifAvailable: true }, (lock) => {
    if (!lock) throw new Error(`another tab of this page is converting ${entry.id}; it will be in storage when that tab finishes (then load it again here)`);
    return run();
  });
}

async function convert(entry, from, progress, isCancelled) {
  const root = await modelsDir();
  // A directory without a manifest is an interrupted conversion: start over cleanly.
  await root.removeEntry(entry.id, { recursive: true }).catch(() => {});
  const sources = [];
  let dir = null;
  let converter = null;
  try {
    if (from.base) {
      for (const file of [entry.vae, entry.var]) sources.push(await serverSource(from.base, file, progress, isCancelled));
    } else {
      sources.push(fileSource(from.vae), fileSource(from.var));
      for (const s of sources) progress({ file: s.name, loaded: 0, total: s.size });
    }
    const [vae, varFile] = sources;
    converter = PthConverter.open(vae.read, vae.size, vae.name, varFile.read, varFile.size, varFile.name,
      Uint32Array.from(entry.patch_nums), entry.id, entry.precision || 'int8', 0);
    dir = await root.getDirectoryHandle(entry.id, { create: true });
    const started = performance.now();
    let shards = 0;
    let stored = 0;
    while (!converter.isDone()) {
      if (isCancelled()) throw new Cancelled();
      for (const shard of converter.step()) {
        await writeStored(dir, shard.file, shard.bytes);
        shards += 1;
        stored += shard.bytes.length;
      }
      const p = converter.progress();
      const seconds = (performance.now() - started) / 1000;
      const rate = p.bytes_done / Math.max(seconds, 1e-3);
      progress({
        conversion: true, ...p, shards, stored_bytes: stored, seconds, rate,
        left_seconds: rate > 0 ? (p.bytes_total - p.bytes_done) / rate : null,
      });
      await nextTask(); // lets a cancel message in
    }
    const done = converter.finish();
    converter = null;
    // Linear memory only grows, so its size now is the conversion's peak in wasm.
    const wasmBytes = (await init()).memory.buffer.byteLength;
    await writeStored(dir, 'config.json', new TextEncoder().encode(done.config_json));
    await writeStored(dir, MANIFEST_FILE, new TextEncoder().encode(done.manifest_json)); // last: complete
    const seconds = (performance.now() - started) / 1000;
    return { dir, manifestText: done.manifest_json, fingerprint: done.fingerprint, seconds, wasmBytes };
  } catch (e) {
    if (dir || e instanceof Cancelled) await root.removeEntry(entry.id, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    try { converter?.free(); } catch (_) { /* already consumed */ }
    for (const s of sources) await s.close();
  }
}
