// The edit mode's canvas work: the source image, and the mask painted with pointer events on
// canvas#mask (stacked exactly over canvas#output, at the model's resolution). The mask is the
// canvas's alpha channel; nothing here clears it except the person (Clear, Eraser, Invert), so
// it survives failed and cancelled runs and leaving edit mode.

// Uploads larger than this are refused before decoding (a phone photo is 3–12 MB).
export const MAX_UPLOAD_BYTES = 50 * 2 ** 20;
// Sides larger than this are refused after decoding (Chromium's canvas limit is 32767).
export const MAX_UPLOAD_SIDE = 16384;

const PAINT = 'rgb(255, 48, 48)';

export class Editor {
  constructor(mask) {
    this.mask = mask;
    this.ctx = mask.getContext('2d', { willReadFrequently: true });
    this.source = null; // ImageData at the model's size
    this.tool = 'brush';
    this.brush = 4;
    this.stroke = null; // {last: [x, y]} or {start: [x, y], snapshot: ImageData} while drawing
    mask.addEventListener('pointerdown', (e) => this.down(e));
    mask.addEventListener('pointermove', (e) => this.move(e));
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
      mask.addEventListener(type, () => { this.stroke = null; });
    }
    this.onPaint = () => {}; // called when a stroke starts (the page shows the mask again)
  }

  // Canvas strokes are antialiased; the model only sees painted or not (alpha ≥ 128), so the
  // overlay is snapped to exactly that after every stroke: what you see is what is generated.
  binarize() {
    const img = this.ctx.getImageData(0, 0, this.mask.width, this.mask.height);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      const painted = d[i + 3] >= 128;
      d[i] = 255; d[i + 1] = 48; d[i + 2] = 48;
      d[i + 3] = painted ? 255 : 0;
    }
    this.ctx.putImageData(img, 0, 0);
  }

  // A new model resolution: the old source and mask do not fit it. `fit` is the model's
  // config.json `fit` (how its training images were fitted; absent: the centred square).
  reset(size, fit) {
    this.mask.width = size;
    this.mask.height = size;
    this.border = fit && fit.rule === 'pad' ? Math.min(fit.border, Math.floor((size - 1) / 2)) : 0;
    this.source = null;
    this.original = null;
  }

  setTool(tool) {
    this.tool = tool;
    this.mask.dataset.tool = tool;
  }

  // The canvas's current pixels become the source (the last generated or edited image).
  takeSource(canvas) {
    const size = this.mask.width;
    if (canvas.width !== size || canvas.height !== size) return false;
    this.source = canvas.getContext('2d').getImageData(0, 0, size, size);
    this.original = null;
    return true;
  }

  // The source's own geometry, which a mask file has (as `var inpaint --mask` wants it): an
  // upload's width and height and its fit, or the model's side as is for a generated source.
  maskGeometry() {
    const size = this.mask.width;
    if (!this.original) return { width: size, height: size, border: 0 };
    return { ...this.original, border: this.border };
  }

  // The mask as a file in the source's geometry, by the rule the command line reads: white
  // where the model generates, black where it keeps, opaque. The part the model sees (all of
  // it, or the inside of a pad border) goes back to the source's centred square, nearest
  // neighbour, so a source at the model's inner side (a 28 px Fashion-MNIST image) gets the
  // painted pixels exactly; outside that square the model never looked, so nothing generates.
  async maskPng() {
    const size = this.mask.width;
    const { width, height, border } = this.maskGeometry();
    const { mask } = this.generateMask('inpaint');
    const model = new ImageData(size, size);
    for (let i = 0; i < mask.length; i++) {
      const v = mask[i] ? 255 : 0;
      model.data.set([v, v, v, 255], i * 4);
    }
    const from = new OffscreenCanvas(size, size);
    from.getContext('2d').putImageData(model, 0, 0);
    const out = new OffscreenCanvas(width, height);
    const ctx = out.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, width, height);
    ctx.imageSmoothingEnabled = false;
    const s = Math.min(width, height);
    const inner = size - 2 * border;
    ctx.drawImage(from, border, border, inner, inner, (width - s) / 2, (height - s) / 2, s, s);
    return out.convertToBlob({ type: 'image/png' });
  }

  // A mask read by the wasm reader (`readMask`: one byte per model pixel, 1 generates) becomes
  // the painted overlay.
  setMask(mask) {
    const size = this.mask.width;
    const img = new ImageData(size, size);
    for (let i = 0; i < mask.length; i++) img.data.set([255, 48, 48, mask[i] ? 255 : 0], i * 4);
    this.ctx.putImageData(img, 0, 0);
  }

  // Decodes an uploaded file and fits it to the model as its training images were: the
  // centred square, resized with the browser's high-quality filter to the model's side (or,
  // for a `pad` fit, to the side less the border, on black). Resolves to a sentence on what
  // was done; rejects with one on what is wrong.
  async loadFile(file) {
    const size = this.mask.width;
    const mb = (b) => `${(b / 2 ** 20).toFixed(1)} MB`;
    if (file.size > MAX_UPLOAD_BYTES) {
      throw new Error(`${file.name} is ${mb(file.size)}; the page reads images up to ${mb(MAX_UPLOAD_BYTES)}`);
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      throw new Error(`${file.name} is not an image this browser can decode`);
    }
    const { width: w, height: h } = bitmap;
    if (w > MAX_UPLOAD_SIDE || h > MAX_UPLOAD_SIDE) {
      bitmap.close();
      throw new Error(`${file.name} is ${w}x${h}; the page reads images up to ${MAX_UPLOAD_SIDE} px a side`);
    }
    const s = Math.min(w, h);
    const border = this.border || 0;
    const inner = size - 2 * border;
    const canvas = new OffscreenCanvas(size, size);
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, size, size);
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, (w - s) / 2, (h - s) / 2, s, s, border, border, inner, inner);
    bitmap.close();
    this.source = ctx.getImageData(0, 0, size, size);
    this.original = { width: w, height: h };
    const crop = w === h ? '' : `cropped to its centred ${s}x${s} square and `;
    const placed = border ? ` on a ${size}x${size} black canvas (${border} px border)` : '';
    return `${file.name}: ${w}x${h}, ${crop}resized to ${inner}x${inner}${placed}`;
  }

  drawSource(canvas) {
    canvas.width = this.source.width;
    canvas.height = this.source.height;
    canvas.getContext('2d').putImageData(this.source, 0, 0);
  }

  // One byte per pixel, 1 where the model generates: the painted pixels, or for out-painting
  // everything else. `painted` counts the painted pixels.
  generateMask(mode) {
    const { data } = this.ctx.getImageData(0, 0, this.mask.width, this.mask.height);
    const out = new Uint8Array(data.length / 4);
    let painted = 0;
    for (let i = 0; i < out.length; i++) {
      const p = data[i * 4 + 3] >= 128;
      painted += p;
      out[i] = (mode === 'outpaint' ? !p : p) ? 1 : 0;
    }
    return { mask: out, painted };
  }

  clear() {
    this.ctx.clearRect(0, 0, this.mask.width, this.mask.height);
  }

  invert() {
    const img = this.ctx.getImageData(0, 0, this.mask.width, this.mask.height);
    const d = img.data;
    for (let i = 3; i < d.length; i += 4) d[i] = d[i] >= 128 ? 0 : 255;
    this.ctx.putImageData(img, 0, 0);
    this.binarize();
  }

  point(e) {
    const r = this.mask.getBoundingClientRect();
    return [(e.clientX - r.left) * (this.mask.width / r.width), (e.clientY - r.top) * (this.mask.height / r.height)];
  }

  down(e) {
    if (e.button !== 0) return;
    this.mask.setPointerCapture(e.pointerId);
    this.onPaint();
    const p = this.point(e);
    if (this.tool === 'rect') {
      this.stroke = { start: p, snapshot: this.ctx.getImageData(0, 0, this.mask.width, this.mask.height) };
      this.rect(p);
    } else {
      this.stroke = { last: p };
      this.line(p, p);
    }
  }

  move(e) {
    if (!this.stroke) return;
    const p = this.point(e);
    if (this.stroke.snapshot) {
      this.ctx.putImageData(this.stroke.snapshot, 0, 0);
      this.rect(p);
    } else {
      this.line(this.stroke.last, p);
      this.stroke.last = p;
    }
  }

  // The rectangle from the stroke's start to `p`, snapped outwards to whole pixels.
  rect(p) {
    const [a, b] = [this.stroke.start, p];
    const x0 = Math.floor(Math.min(a[0], b[0]));
    const y0 = Math.floor(Math.min(a[1], b[1]));
    const x1 = Math.ceil(Math.max(a[0], b[0]));
    const y1 = Math.ceil(Math.max(a[1], b[1]));
    this.ctx.globalCompositeOperation = 'source-over';
    this.ctx.fillStyle = PAINT;
    this.ctx.fillRect(x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0));
  }

  line(from, to) {
    const c = this.ctx;
    c.globalCompositeOperation = this.tool === 'eraser' ? 'destination-out' : 'source-over';
    c.strokeStyle = PAINT;
    c.fillStyle = PAINT;
    c.lineWidth = this.brush;
    c.lineCap = 'round';
    c.beginPath();
    c.moveTo(from[0], from[1]);
    c.lineTo(to[0], to[1]);
    c.stroke();
    c.beginPath();
    c.arc(to[0], to[1], this.brush / 2, 0, 2 * Math.PI);
    c.fill();
    c.globalCompositeOperation = 'source-over';
    this.binarize();
  }
}
