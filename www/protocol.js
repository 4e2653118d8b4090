// The message protocol between the page (app.js), the inference worker (worker.js) and the
// preview worker (preview-worker.js).
//
// Page -> worker
//   {type: 'load', url, backend, confirmed}     load the model directory at `url` (ends with /);
//                                               backend: 'auto' (WebGPU, else CPU) or 'cpu';
//                                               a `url` on another origin waits for `confirmed`
//                                               ('confirm-load' asks)
//   {type: 'generate', id, label, labels, params}
//                                               params: {cfg, top_k, top_p, temperature, more_smooth, seed};
//                                               labels (optional): one class per image of a batched run
//   {type: 'edit', id, source, mask, label, params, keepOriginal}
//                                               keepOriginal: the source's pixels outside the mask
//                                               in the final image (feathered seam); source: ArrayBuffer, size x size RGBA; mask:
//                                               ArrayBuffer, one byte per pixel (non-zero =
//                                               generate); label: a class or num_classes (none)
//   {type: 'convert', entry, from, confirmed, backend}
//                                               an official model (catalog entry of kind 'pth'):
//                                               from storage if converted before, else converted
//                                               from `from` ({base}: a hub URL, or {vae, var}:
//                                               Files) once `confirmed`, else 'confirm' is asked
//   {type: 'cancel'}                            stop the running generation before its next
//                                               scale, or the load or conversion in progress
//                                               (downloads are aborted at once); the page
//                                               replaces a worker that does not answer in 1 s
//   {type: 'read-mask', name, bytes, size, width, height, border}
//                                               a mask file (ArrayBuffer) for a source of width x
//                                               height, fitted to the model's size by border (0: as
//                                               is), read by picture::mask_of as `var inpaint --mask`
//                                               reads it
//   {type: 'clear-cache'}                       delete cached model files and converted models
//   {type: 'storage'}                           list the converted models in storage
//   {type: 'forget', id}                        delete one converted model
//   {type: 'preview-port', port}                a MessagePort to the preview worker (null: none):
//                                               runs of small models hand it their previews
// Worker -> page
//   {type: 'progress', file, loaded, total, cached}
//                                               download progress of one file (total may be 0 if
//                                               unknown; cached: read from the Cache API)
//   {type: 'notice', message}                  something the person should know that is not an
//                                               error (a file could not be cached)
//   {type: 'budget', weights_bytes, kv_cache_bytes, activations_bytes, download_bytes, backend}
//                                               a sharded model's memory needs, before its download
//   {type: 'confirm', id, base}                 converting `id` needs a download: ask the person
//   {type: 'confirm-load', url, origin, bytes}  `url` is on another origin: ask the person first
//                                               (bytes: the download, 0 when the server does not say)
//   {type: 'converting', tensors_done, tensors_total, bytes_done, bytes_total, shards,
//    stored_bytes, seconds, rate, left_seconds} conversion progress (bytes of the checkpoints)
//   {type: 'storage', models: [{id, bytes, fingerprint}]}
//                                               the converted models kept in this browser
//   {type: 'ready', backend, reason, config, batch, cached, fingerprint, converted, stored,
//    conversion_s, conversion_wasm_bytes}
//                                               backend: 'webgpu' | 'cpu'; reason: why not WebGPU (or '');
//                                               batch: {images, reason}, the most images a run holds here;
//                                               fingerprint: SHA-256 of manifest.json (sharded models);
//                                               converted: just converted; stored: read from storage;
//                                               full_previews: a small model, whose runs can hand
//                                               their previews to a preview worker
//   {type: 'load-cancelled', message}           a load or conversion stopped on request
//   {type: 'scale', id, si, patch, size, ms, count, rgba}
//                                               rgba: ArrayBuffer (transferred), `count` size x size
//                                               RGBA images one after another (a batch)
//   {type: 'source', id, size, rgba, description}
//                                               an edit's source through the VQ-VAE, and what
//                                               the mask asks for (before the first scale)
//   {type: 'done', id, size, count, totalMs, rgba}
//                                               the final image(s), laid out as in 'scale'
//   {type: 'mask', name, mask}                  a mask file read: ArrayBuffer, one byte per model
//                                               pixel, 1 generates
//   {type: 'cancelled', id}
//   {type: 'cache-cleared'}
//   {type: 'error', phase, message, fatal}      phase: 'load' | 'generate' | 'edit' | 'mask'; fatal: a trap
//                                               (wasm panic, out of memory): the page replaces the worker
// Page -> preview worker
//   {type: 'preview-port', port}                its end of the channel to the inference worker
// Inference worker -> preview worker (over the port)
//   {type: 'preview-model', token, configJson, vqvae, var}
//                                               the model to decode with (configJson null: none);
//                                               token names it in the answer
//   {type: 'latent', id, si, patch, side, ms, count, fhat}
//                                               f̂ after scale si (ArrayBuffer of f32, transferred),
//                                               to decode at side² latent positions
// Preview worker -> inference worker (over the port)
//   {type: 'preview-ready', token}              the model `token` is loaded: hand latents over
//   {type: 'preview-failed', token, message}    it could not be: keep decoding in the worker
// Preview worker -> page
//   {type: 'scale', ...}                        as the inference worker's, for a handed-over scale
//   {type: 'preview-failed', id, si, message}   that scale's preview could not be decoded
export const MSG = Object.freeze({
  LOAD: 'load',
  GENERATE: 'generate',
  EDIT: 'edit',
  SOURCE: 'source',
  READ_MASK: 'read-mask',
  MASK: 'mask',
  CANCEL: 'cancel',
  CONVERT: 'convert',
  CONFIRM: 'confirm',
  CONFIRM_LOAD: 'confirm-load',
  CONVERTING: 'converting',
  STORAGE: 'storage',
  FORGET: 'forget',
  LOAD_CANCELLED: 'load-cancelled',
  CLEAR_CACHE: 'clear-cache',
  PROGRESS: 'progress',
  BUDGET: 'budget',
  NOTICE: 'notice',
  READY: 'ready',
  SCALE: 'scale',
  DONE: 'done',
  CANCELLED: 'cancelled',
  CACHE_CLEARED: 'cache-cleared',
  ERROR: 'error',
  PREVIEW_PORT: 'preview-port',
  PREVIEW_MODEL: 'preview-model',
  PREVIEW_READY: 'preview-ready',
  PREVIEW_FAILED: 'preview-failed',
  LATENT: 'latent',
});

export const MODEL_FILES = ['config.json', 'vqvae.safetensors', 'var.safetensors'];
// A sharded model directory (var convert) has this beside config.json, and its shards.
export const MANIFEST_FILE = 'manifest.json';
export const CACHE_NAME = 'var-web-models-v1';
