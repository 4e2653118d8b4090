// The preview worker: decodes the previews the inference worker (worker.js) hands over, so a
// run of a small model samples its next scale while the last one is decoded, on another
// core. It holds its own copy of the model on the CPU (for the VQ-VAE; the model is
// small, or the inference worker would not hand anything over) and posts each picture to the
// page as the inference worker would. See protocol.js for the messages.
import init, { VarModel } from './pkg/var_web.js';
import { MSG } from './protocol.js';

let port = null;
let model = null;
let token = 0; // the model the inference worker sent last
let newest = 0; // the newest run seen: latents of older runs are dropped, not decoded
let queue = Promise.resolve(); // decodes run one at a time, in the order they came

const message = (e) => (e && e.message ? e.message : String(e));

async function loadModel({ token: sent, configJson, vqvae, var: weights }) {
  token = sent;
  model = null;
  if (!configJson) return;
  try {
    await init();
    const loaded = await VarModel.load(configJson, new Uint8Array(vqvae), new Uint8Array(weights), 'cpu');
    if (token !== sent) return; // another model came meanwhile
    model = loaded;
    port.postMessage({ type: MSG.PREVIEW_READY, token: sent });
  } catch (e) {
    port.postMessage({ type: MSG.PREVIEW_FAILED, token: sent, message: message(e) });
  }
}

async function decode({ id, si, patch, side, ms, count, fhat }) {
  if (id < newest) return;
  try {
    if (!model) throw new Error('the preview worker has no model');
    const rgba = await model.decodeLatent(new Float32Array(fhat), count, side);
    const size = Math.round(Math.sqrt(rgba.length / 4 / count));
    self.postMessage({ type: MSG.SCALE, id, si, patch, size, ms, count, rgba: rgba.buffer }, [rgba.buffer]);
  } catch (e) {
    self.postMessage({ type: MSG.PREVIEW_FAILED, id, si, message: message(e) });
  }
}

function onPortMessage({ data }) {
  if (data.type === MSG.PREVIEW_MODEL) {
    queue = queue.then(() => loadModel(data));
  } else if (data.type === MSG.LATENT) {
    newest = Math.max(newest, data.id);
    queue = queue.then(() => decode(data));
  }
}

self.onmessage = ({ data }) => {
  if (data.type !== MSG.PREVIEW_PORT) return;
  port?.close();
  port = data.port;
  model = null;
  port.onmessage = onPortMessage;
};
