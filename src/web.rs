//! The browser adapter: the only module that imports wasm-bindgen, js-sys and web-sys.
//!
//! A thin layer over the native core: it loads a model directory's three files (handed over as
//! bytes by the worker), picks the WebGPU or CPU device, and drives [`Generation`] one scale at
//! a time (for generation and for editing), handing each scale's preview to JavaScript and
//! yielding to the event loop between scales so that a `cancel` message is seen. The
//! pipelines (editing, the preview policy) are the core's; this file only converts.
//!
//! Every error crosses as a JavaScript `Error` whose `message` is one sentence and whose
//! `name` says what kind of failure it is, so the page branches on the name, never on the
//! text: `WebGpuUnavailable` (the device could not be opened: fall back to the CPU),
//! `Cancelled`, `BadModel`, `InvalidArgument`, `Io`, `Device` ([`VarError::name`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::Device;
use js_sys::{Float32Array, Function, Promise, Uint8ClampedArray};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::bench::BenchSettings;
use crate::config::SamplingParams;
use crate::config::{ModelConfig, Storage};
use crate::edit::{PreparedEdit, feather_px, keep_original, prepare_edit};
use crate::error::VarError;
use crate::generate::{EditSource, Generation, ScalePicture};
use crate::model::Model;
use crate::modeldir::staged::StagedModel;
use crate::modeldir::{LoadOptions, ModelFiles, VAR_FILE, VQVAE_FILE, load_files};
use crate::nn::Kernels;
use crate::readback::read_f32;
use crate::weights::safetensors::header_len;
use crate::weights::shards::{ImageMemory, Manifest, Part, memory_budget};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

thread_local! {
    /// burn's wgpu runtime can be initialised once per page; later loads reuse the device.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

async fn webgpu_device() -> Result<Device, JsValue> {
    if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
        return Ok(device);
    }
    let device = Device::wgpu_options().init_async().await.map_err(|e| {
        named_error(
            "WebGpuUnavailable",
            &format!("WebGPU could not be initialised: {e}"),
        )
    })?;
    WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// The device for a backend name the page sends: `"webgpu"` or `"cpu"`.
async fn device_for(backend: &str) -> Result<Device, JsValue> {
    match backend {
        "webgpu" => webgpu_device().await,
        "cpu" => Ok(Device::flex()),
        other => Err(named_error(
            "InvalidArgument",
            &format!("unknown backend '{other}': use 'webgpu' or 'cpu'"),
        )),
    }
}

/// A JavaScript `Error` with `name` and `message`.
fn named_error(name: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    error.set_name(name);
    error.into()
}

fn js_error(e: VarError) -> JsValue {
    named_error(e.name(), &e.to_string())
}

/// `[B, 3, H, W]` in [0, 1] → the B images' RGBA bytes, one after another (each an
/// `ImageData`'s).
fn to_rgba(pixels: &[f32], size: usize) -> Vec<u8> {
    let batch = pixels.len() / (3 * size * size).max(1);
    Model::to_rgb8(pixels, batch, size)
        .iter()
        .flat_map(|rgb| rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]))
        .collect()
}

/// The most images one batched run may hold: the page offers 1, 4, 9 or 16.
const MAX_BATCH: usize = 16;
/// What wasm32 can address: the CPU path's whole memory, weights included.
const WASM32_MEMORY_BYTES: u64 = 4 << 30;

/// How long a run computes between turns of the JS event loop: a `cancel` is answered
/// within one scale plus this. Each turn costs a dual-core machine about 15 ms of the run (the
/// worker gives up its core to the page's drawing of the preview it just sent and waits for
/// it back: the shipped model took 350-380 ms with a turn after every scale and 250-275 ms
/// with none, headless Chromium, 2026-12-03), so a run of quick scales takes one turn every
/// 100 ms instead of one a scale; scales longer than this (the official models) still yield
/// after each.
const YIELD_INTERVAL_MS: f64 = 100.0;

/// Lets the JS event loop run (a macrotask), so messages such as `cancel` are handled even
/// when the device answers synchronously (the CPU backend).
async fn yield_to_event_loop() -> Result<(), JsValue> {
    let set_timeout: Function = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
        .map_err(|_| named_error("Device", "this context has no setTimeout"))?
        .dyn_into()
        .map_err(|_| named_error("Device", "setTimeout is not a function"))?;
    let promise = Promise::new(&mut |resolve, _| {
        let _ = set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(0));
    });
    JsFuture::from(promise)
        .await
        .map(|_| ())
        .map_err(|_| named_error("Device", "waiting for the event loop failed"))
}

/// A loaded model on one device.
#[wasm_bindgen]
pub struct VarModel {
    model: Rc<Model>,
    backend: String,
    cancelled: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl VarModel {
    /// Loads a model directory's files on `"webgpu"` or `"cpu"`.
    pub async fn load(
        config_json: String,
        vqvae: Vec<u8>,
        var: Vec<u8>,
        backend: String,
    ) -> Result<VarModel, JsValue> {
        let device = device_for(&backend).await?;
        let files = ModelFiles {
            config_json: &config_json,
            vqvae: &vqvae,
            var: &var,
        };
        // burn's ops on both paths: our WebAssembly SIMD kernels (`kernels::cpu`) are correct
        // but measured slower than burn-flex's in the page (docs/measurements.md).
        let model = load_files(&files, &device, &LoadOptions::default()).map_err(js_error)?;
        Ok(VarModel {
            model: Rc::new(model),
            backend,
            cancelled: Rc::new(Cell::new(false)),
        })
    }

    /// The model's `config.json` (class names, scales, recommended sampling).
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        self.model.config.to_json()
    }

    /// The most images one batched run of this model holds here, at most 16, and why no more,
    /// as JSON `{images, reason}` (`reason` empty when all 16 fit). On WebGPU the limit is
    /// `gpu_binding_bytes`, the device's largest storage binding (what WebGPU tells of its
    /// memory); on the CPU it is the 4 GiB wasm32 addresses.
    #[wasm_bindgen(js_name = batchLimit)]
    pub fn batch_limit(&self, gpu_binding_bytes: f64) -> String {
        let gpu = self.backend == "webgpu";
        let image = ImageMemory::of(&self.model.config);
        let weights = 4 * (self.model.vqvae.num_params() + self.model.var.num_params()) as u64;
        let limit = if gpu {
            gpu_binding_bytes as u64
        } else {
            WASM32_MEMORY_BYTES
        };
        let images = image.largest_batch(weights, gpu, limit, MAX_BATCH);
        let mib = |b: u64| b >> 20;
        let reason = if images == MAX_BATCH {
            String::new()
        } else if gpu {
            format!(
                "each image needs a {} MiB buffer and this GPU binds at most {} MiB, so {images} fit one run",
                mib(image.largest_buffer_bytes),
                mib(limit)
            )
        } else {
            format!(
                "each image needs {} MiB beside the {} MiB of weights, and WebAssembly addresses 4096 MiB, so {images} fit one run",
                mib(image.kv_cache_bytes + image.activations_bytes),
                mib(weights)
            )
        };
        serde_json::json!({ "images": images, "reason": reason }).to_string()
    }

    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Asks a running `generate` to stop before its next scale.
    pub fn cancel(&self) {
        self.cancelled.set(true);
    }

    /// Generates one image of class `label`. After every scale calls
    /// `onScale(si, patch, rgba: Uint8ClampedArray, size, milliseconds)` with the decoded
    /// preview; resolves to the final RGBA image, or rejects with a sentence (also on cancel).
    /// With `onLatent`, the previews (every scale but the last) are not decoded here:
    /// `onLatent(si, patch, fHat: Float32Array, side, milliseconds)` gets f̂ and the latent
    /// side to decode it at instead, for another worker to decode
    /// ([`decode_latent`](Self::decode_latent)) while this one goes on.
    pub fn generate(
        &self,
        label: u32,
        params: JsValue,
        on_scale: Function,
        on_latent: Option<Function>,
    ) -> Promise {
        self.stream(vec![label], params, None, on_scale, on_latent)
    }

    /// Generates one image per entry of `labels` in one batched run (CFG included), streamed
    /// like `generate`: `onScale` gets every image's preview, one after another in `rgba`
    /// (`labels.length` images of `size`²); resolves to the final images the same way.
    #[wasm_bindgen(js_name = generateBatch)]
    pub fn generate_batch(
        &self,
        labels: Vec<u32>,
        params: JsValue,
        on_scale: Function,
        on_latent: Option<Function>,
    ) -> Promise {
        if labels.is_empty() || labels.len() > MAX_BATCH {
            let message = format!(
                "a batch holds 1 to {MAX_BATCH} images, not {}",
                labels.len()
            );
            return Promise::reject(&named_error("InvalidArgument", &message));
        }
        self.stream(labels, params, None, on_scale, on_latent)
    }

    /// In-paints, out-paints or edits `source` (RGBA, the model's size²): the pixels where
    /// `generate_mask` (one byte per pixel) is non-zero are generated under class `label` (the
    /// model's class count is the null class), the rest keep the source's tokens. Calls
    /// `onSource(rgba, size, description)` with the source as the model sees it (encoder →
    /// decoder) and a sentence on the mask, then streams scales like `generate`.
    /// With `keep_original` the last scale's image keeps the source's pixels outside the mask,
    /// over a feathered seam ([`keep_original`]).
    #[allow(clippy::too_many_arguments)]
    pub fn edit(
        &self,
        source: Vec<u8>,
        generate_mask: Vec<u8>,
        label: u32,
        params: JsValue,
        on_source: Function,
        on_scale: Function,
        keep_original: bool,
        on_latent: Option<Function>,
    ) -> Promise {
        let request = EditRequest {
            source,
            generate_mask,
            on_source,
            keep_original,
        };
        self.stream(vec![label], params, Some(request), on_scale, on_latent)
    }

    /// Whether a one-image run of this model previews its scales by decoding f̂ in full
    /// ([`ScalePicture::Full`]): the small models, whose previews are worth handing to a
    /// second worker with `onLatent` (it holds a copy of the model).
    #[wasm_bindgen(js_name = fullPreviews)]
    pub fn full_previews(&self) -> bool {
        crate::generate::previews_in_full(&self.model.config)
    }

    /// Decodes `f_hat` (what `onLatent` gave: `batch` maps of this model's latent, `[B, Cvae,
    /// N, N]`) at `side`² latent positions ([`Model::decode_at`]) to RGBA, `batch` images one
    /// after another.
    #[wasm_bindgen(js_name = decodeLatent)]
    pub async fn decode_latent(
        &self,
        f_hat: Vec<f32>,
        batch: u32,
        side: u32,
    ) -> Result<Uint8ClampedArray, JsValue> {
        let cfg = &self.model.config;
        let (n, c) = (cfg.latent_size(), cfg.vqvae.z_channels);
        let batch = batch as usize;
        if batch == 0 || f_hat.len() != batch * c * n * n {
            return Err(named_error(
                "InvalidArgument",
                &format!(
                    "a latent of this model is {c}x{n}x{n} values a map, so {} values are not {batch} of them",
                    f_hat.len()
                ),
            ));
        }
        let device = self.model.device();
        let f_hat = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(f_hat, [batch, c, n, n]),
            &device,
        );
        let picture = self.model.decode_at(f_hat, side as usize);
        let size = picture.dims()[3];
        let pixels = read_f32(picture).await.map_err(js_error)?;
        Ok(Uint8ClampedArray::from(to_rgba(&pixels, size).as_slice()))
    }

    /// The one streaming loop behind `generate` and `edit`.
    fn stream(
        &self,
        labels: Vec<u32>,
        params: JsValue,
        edit: Option<EditRequest>,
        on_scale: Function,
        on_latent: Option<Function>,
    ) -> Promise {
        let model = self.model.clone();
        let cancelled = self.cancelled.clone();
        cancelled.set(false);
        future_to_promise(async move {
            let params: SamplingParams = serde_wasm_bindgen::from_value(params).map_err(|e| {
                named_error(
                    "InvalidArgument",
                    &format!("invalid sampling settings: {e}"),
                )
            })?;
            let (edit, keep) = match edit {
                Some(request) => {
                    let (edit, keep) = request.prepare(&model).await?;
                    (Some(edit), keep)
                }
                None => (None, None),
            };
            let scales = model.config.num_scales();
            let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
            let mut run = Generation::new(&model, &labels, &params, edit)
                .await
                .map_err(js_error)?;
            let mut last = js_sys::Date::now();
            let mut last_yield = last;
            let mut image = JsValue::NULL;
            while let Some(step) = run.step().await.map_err(js_error)? {
                let (si, patch) = (step.si, step.patch);
                let hand_off = on_latent
                    .as_ref()
                    .filter(|_| run.picture_for(si, patch) != ScalePicture::Final);
                let (callback, args) = if let Some(on_latent) = hand_off {
                    let values = read_f32(run.f_hat().clone()).await.map_err(js_error)?;
                    let latent = Float32Array::from(values.as_slice());
                    let side = JsValue::from(run.picture_side(si, patch) as u32);
                    (on_latent, vec![latent.into(), side])
                } else {
                    let picture = run.scale_picture(si, patch);
                    let size = picture.dims()[3];
                    let pixels = read_f32(picture).await.map_err(js_error)?;
                    let mut bytes = to_rgba(&pixels, size);
                    if let Some(keep) = keep.as_ref().filter(|_| si + 1 == scales) {
                        let feather = feather_px(size);
                        bytes = keep_original(
                            &keep.source,
                            &bytes,
                            &keep.generate_px,
                            size,
                            4,
                            feather,
                        )
                        .map_err(js_error)?;
                    }
                    let rgba = Uint8ClampedArray::from(bytes.as_slice());
                    image = rgba.clone().into();
                    (&on_scale, vec![rgba.into(), JsValue::from(size as u32)])
                };
                let now = js_sys::Date::now();
                // (si, patch, rgba, size, ms) for onScale, (si, patch, fHat, side, ms) for
                // onLatent.
                let all = js_sys::Array::new();
                all.push(&JsValue::from(si as u32));
                all.push(&JsValue::from(patch as u32));
                for arg in &args {
                    all.push(arg);
                }
                all.push(&JsValue::from(now - last));
                callback
                    .apply(&JsValue::NULL, &all)
                    .map_err(|_| named_error("InvalidArgument", "a scale callback threw"))?;
                last = now;
                if si + 1 < scales && now - last_yield >= YIELD_INTERVAL_MS {
                    yield_to_event_loop().await?;
                    last_yield = js_sys::Date::now();
                    if cancelled.get() {
                        return Err(js_error(VarError::Cancelled));
                    }
                }
            }
            Ok(image)
        })
    }
}

/// Loading a sharded model (`manifest.json` + shards) one shard at a time: `open` checks the
/// config and manifest and opens the device, each `addShard` checks a shard (size, SHA-256
/// and tensor table against the manifest, so a bad download or cache entry is caught before
/// anything is built) and puts its tensors on the device, so wasm memory never holds more
/// than one shard; `finish` assembles the model.
#[wasm_bindgen]
pub struct ShardedLoad {
    staged: StagedModel,
    backend: String,
}

#[wasm_bindgen]
impl ShardedLoad {
    /// For `"webgpu"` or `"cpu"`. A device that cannot be opened fails with an error named
    /// `WebGpuUnavailable`; bad files fail first, with `BadModel`.
    pub async fn open(
        config_json: String,
        manifest_json: String,
        backend: String,
    ) -> Result<ShardedLoad, JsValue> {
        // The files are checked before the device is asked for, so bad files are reported
        // as such and not as a device problem.
        ModelConfig::from_json(&config_json, "config.json").map_err(js_error)?;
        let manifest = Manifest::from_json(&manifest_json).map_err(js_error)?;
        let device = device_for(&backend).await?;
        let staged = StagedModel::new(&config_json, manifest, &device, &LoadOptions::default())
            .map_err(js_error)?;
        Ok(ShardedLoad { staged, backend })
    }

    /// Checks shard `index` against the manifest and puts its tensors on the device.
    #[wasm_bindgen(js_name = addShard)]
    pub fn add_shard(&mut self, index: usize, bytes: &[u8]) -> Result<(), JsValue> {
        self.staged.add_shard(index, bytes).map_err(js_error)
    }

    /// The memory the model will need on this device, as JSON (`weights_bytes`,
    /// `kv_cache_bytes`, `activations_bytes`).
    pub fn budget(&self) -> String {
        let gpu = self.backend == "webgpu";
        let budget = memory_budget(self.staged.config(), self.staged.manifest(), gpu);
        serde_json::to_string(&budget).expect("a budget serialises")
    }

    /// Builds the model; every shard must have been added.
    pub fn finish(self) -> Result<VarModel, JsValue> {
        let model = self.staged.finish().map_err(js_error)?;
        Ok(VarModel {
            model: Rc::new(model),
            backend: self.backend,
            cancelled: Rc::new(Cell::new(false)),
        })
    }
}

/// A checkpoint the worker reads by ranges: `read(offset, length)` returns a `Uint8Array` of
/// exactly those bytes, synchronously (`FileReaderSync` over a `File`, or a synchronous
/// `Range` request; both are allowed in a worker), or throws.
struct JsRanges {
    read: Function,
    len: u64,
    name: String,
}

impl crate::weights::pth::ranged::RangeSource for JsRanges {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let failed = |m: String| std::io::Error::other(m);
        let got = self
            .read
            .call2(
                &JsValue::NULL,
                &JsValue::from(offset as f64),
                &JsValue::from(buf.len() as f64),
            )
            .map_err(|e| {
                let message = e
                    .dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
                    .unwrap_or_else(|| format!("{e:?}"));
                failed(format!("reading {} at byte {offset}: {message}", self.name))
            })?;
        let bytes = got.dyn_into::<js_sys::Uint8Array>().map_err(|_| {
            failed(format!(
                "reading {}: the reader returned no Uint8Array",
                self.name
            ))
        })?;
        if bytes.length() as usize != buf.len() {
            return Err(failed(format!(
                "{} ended early: {} bytes at byte {offset} where {} were asked for (a transfer cut short, or the file changed)",
                self.name,
                bytes.length(),
                buf.len()
            )));
        }
        bytes.copy_to(buf);
        Ok(())
    }
}

/// Read-ahead for the many small reads of a checkpoint's directory and headers: one request
/// per 1 MiB instead of one per header (a tensor's storage is read whole, unbuffered).
const RANGE_WINDOW_BYTES: usize = 1 << 20;

/// The official checkpoints converted in the browser by the code `var convert` runs
/// ([`crate::convert::Conversion`]): `open` reads the two tensor tables and infers the
/// configuration; each `step` converts one tensor and returns the shards it finished
/// (`[{file, bytes}]`), which the worker stores; `finish` gives the config, the manifest and
/// the fingerprint. Memory holds one tensor and one shard.
#[wasm_bindgen]
pub struct PthConverter {
    conversion: crate::convert::Conversion,
}

#[wasm_bindgen]
impl PthConverter {
    /// `vae_read`/`var_read(offset, length)` read the files by ranges (see above); sizes
    /// and names as given by the server or the `File`. `precision`: `f32`, `f16` or `int8`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        vae_read: Function,
        vae_size: f64,
        vae_name: String,
        var_read: Function,
        var_size: f64,
        var_name: String,
        patch_nums: Vec<u32>,
        model_name: String,
        precision: String,
        shard_bytes: f64,
    ) -> Result<PthConverter, JsValue> {
        use crate::weights::pth::PthFile;
        let storage: Storage = precision.parse().map_err(js_error)?;
        let open = |read: Function, size: f64, name: &str| {
            let source = JsRanges {
                read,
                len: size.max(0.0) as u64,
                name: name.to_owned(),
            };
            PthFile::from_ranges(source, RANGE_WINDOW_BYTES).map_err(|e| {
                js_error(VarError::Checkpoint {
                    path: name.to_owned(),
                    source: Box::new(e),
                })
            })
        };
        let vae = open(vae_read, vae_size, &vae_name)?;
        let var = open(var_read, var_size, &var_name)?;
        let patch_nums: Vec<usize> = patch_nums.iter().map(|&p| p as usize).collect();
        let shard_bytes = (shard_bytes >= 1.0).then_some(shard_bytes as usize);
        let conversion = crate::convert::Conversion::new(
            (vae, &vae_name),
            (var, &var_name),
            &patch_nums,
            &model_name,
            storage,
            shard_bytes,
        )
        .map_err(js_error)?;
        Ok(PthConverter { conversion })
    }

    /// The configuration read off the checkpoints, as `config.json` will hold it.
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        self.conversion.config().to_json()
    }

    /// Converts the next tensor: the shards it finished, as `[{file, bytes: Uint8Array}]`.
    pub fn step(&mut self) -> Result<js_sys::Array, JsValue> {
        let shards = self.conversion.step().map_err(js_error)?;
        let out = js_sys::Array::new();
        for shard in shards {
            let entry = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&entry, &"file".into(), &shard.file.into());
            let bytes = js_sys::Uint8Array::from(shard.bytes.as_slice());
            let _ = js_sys::Reflect::set(&entry, &"bytes".into(), &bytes);
            out.push(&entry);
        }
        Ok(out)
    }

    #[wasm_bindgen(js_name = isDone)]
    pub fn is_done(&self) -> bool {
        self.conversion.is_done()
    }

    /// `{tensors_done, tensors_total, bytes_done, bytes_total}` (checkpoint bytes).
    pub fn progress(&self) -> JsValue {
        let (tensors_done, tensors_total) = self.conversion.tensors();
        let (bytes_done, bytes_total) = self.conversion.bytes();
        let info = js_sys::Object::new();
        for (key, value) in [
            ("tensors_done", tensors_done as f64),
            ("tensors_total", tensors_total as f64),
            ("bytes_done", bytes_done as f64),
            ("bytes_total", bytes_total as f64),
        ] {
            let _ = js_sys::Reflect::set(&info, &key.into(), &value.into());
        }
        info.into()
    }

    /// `{config_json, manifest_json, fingerprint}` once every tensor is converted.
    pub fn finish(self) -> Result<JsValue, JsValue> {
        let done = self.conversion.finish().map_err(js_error)?;
        let info = js_sys::Object::new();
        let fingerprint = done.fingerprint();
        for (key, value) in [
            ("config_json", done.config_json),
            ("manifest_json", done.manifest_json),
            ("fingerprint", fingerprint),
        ] {
            let _ = js_sys::Reflect::set(&info, &key.into(), &value.into());
        }
        Ok(info.into())
    }
}

/// A sharded model's fingerprint: the SHA-256 of its `manifest.json` text, as `var convert`
/// prints it.
#[wasm_bindgen]
pub fn fingerprint(manifest_json: &str) -> String {
    crate::weights::shards::sha256_hex(manifest_json.as_bytes())
}

/// A sharded model's manifest, checked (`Manifest::from_json`: format, plain file names,
/// checksums, tensors inside their shards) and written back out: the worker reads the shard
/// list from this, so JavaScript never parses a manifest Rust has not validated.
#[wasm_bindgen(js_name = checkManifest)]
pub fn check_manifest(manifest_json: &str) -> Result<String, JsValue> {
    Ok(Manifest::from_json(manifest_json)
        .map_err(js_error)?
        .to_json())
}

/// What `edit` hands over before the loop starts.
struct EditRequest {
    source: Vec<u8>,
    generate_mask: Vec<u8>,
    on_source: Function,
    keep_original: bool,
}

/// What the last scale of an edit needs to keep the source outside the mask: the source as
/// the page gave it (RGBA) and the generated pixels.
struct KeepOriginal {
    source: Vec<u8>,
    generate_px: Vec<bool>,
}

impl EditRequest {
    /// Runs the core's edit pipeline ([`prepare_edit`]) on the page's RGBA and byte mask, and
    /// reports the source as the model sees it.
    async fn prepare(self, model: &Model) -> Result<(EditSource, Option<KeepOriginal>), JsValue> {
        let size = model.config.image_size;
        if self.source.len() != size * size * 4 {
            return Err(named_error(
                "InvalidArgument",
                &format!(
                    "the source image has {} bytes; this model edits {size}x{size} RGBA ({} bytes)",
                    self.source.len(),
                    size * size * 4
                ),
            ));
        }
        let painted: Vec<bool> = self.generate_mask.iter().map(|&m| m != 0).collect();
        let rgb: Vec<u8> = self
            .source
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let PreparedEdit {
            edit,
            source,
            description,
        } = prepare_edit(model, &rgb, &painted)
            .await
            .map_err(js_error)?;
        let pixels = read_f32(source.reconstruction(model))
            .await
            .map_err(js_error)?;
        let rgba = Uint8ClampedArray::from(to_rgba(&pixels, size).as_slice());
        let args = js_sys::Array::of3(&rgba, &JsValue::from(size as u32), &description.into());
        self.on_source
            .apply(&JsValue::NULL, &args)
            .map_err(|_| named_error("InvalidArgument", "the onSource callback threw"))?;
        let keep = self.keep_original.then_some(KeepOriginal {
            source: self.source,
            generate_px: painted,
        });
        Ok((edit, keep))
    }
}

/// A mask file as the page reads it, by the rule `var inpaint --mask` uses
/// ([`crate::picture::mask_of`]): the bytes of a picture of `width` x `height` (the source's
/// size), fitted to the model's `size`² by `pad_border` (0: the centred square, as for a
/// source already at the model's size; otherwise a `pad` fit). One byte per pixel, 1 where the
/// model generates.
#[wasm_bindgen(js_name = readMask)]
pub fn read_mask(
    bytes: &[u8],
    size: usize,
    width: u32,
    height: u32,
    pad_border: usize,
) -> Result<Vec<u8>, JsValue> {
    let refuse = |msg: String| named_error("InvalidArgument", &msg);
    if size == 0 || size > crate::config::limits::MAX_IMAGE_SIZE {
        return Err(refuse(format!(
            "a model side of {size} px is not one a model can have"
        )));
    }
    let budget = crate::picture::alloc_budget(bytes.len() as u64);
    let img = crate::picture::decode_bytes(bytes, budget).map_err(|e| {
        refuse(format!(
            "the mask is not an image this page reads (PNG or JPEG): {e}"
        ))
    })?;
    let rule = match pad_border {
        0 => crate::config::Fit::Crop,
        border => crate::config::Fit::Pad { border },
    };
    let mask = crate::picture::mask_of(&img, size, (width, height), rule).map_err(refuse)?;
    Ok(mask.into_iter().map(u8::from).collect())
}

/// The largest tensor of a model in two files as `backend`'s device would hold it, read from
/// the safetensors headers alone (the arrays are not copied into wasm): `{name, bytes}`, so
/// the page can compare it with the adapter's largest buffer binding before loading.
#[wasm_bindgen(js_name = largestTensor)]
pub fn largest_tensor(
    vqvae: &js_sys::Uint8Array,
    var: &js_sys::Uint8Array,
    backend: &str,
) -> Result<JsValue, JsValue> {
    let gpu = backend == "webgpu";
    let mut best = (String::new(), 0u64);
    for (bytes, file, part) in [(vqvae, VQVAE_FILE, Part::Vqvae), (var, VAR_FILE, Part::Var)] {
        let first = bytes.subarray(0, 8.min(bytes.length())).to_vec();
        let n = header_len(&first).unwrap_or(usize::MAX);
        let end = u32::try_from(n.saturating_add(8))
            .unwrap_or(u32::MAX)
            .min(bytes.length());
        let header = bytes.subarray(0, end).to_vec();
        let largest = crate::weights::safetensors::largest_tensor(&header, file, part, gpu)
            .map_err(js_error)?;
        if let Some((name, size)) = largest.filter(|(_, size)| *size > best.1) {
            best = (name, size);
        }
    }
    Ok(tensor_info(&best.0, best.1))
}

/// The largest tensor of a sharded model as `backend`'s device would hold it, from its
/// manifest: `{name, bytes}`.
#[wasm_bindgen(js_name = largestShardedTensor)]
pub fn largest_sharded_tensor(manifest_json: &str, backend: &str) -> Result<JsValue, JsValue> {
    let manifest = Manifest::from_json(manifest_json).map_err(js_error)?;
    let (name, bytes) = manifest.largest_device_tensor(backend == "webgpu");
    Ok(tensor_info(&name, bytes))
}

fn tensor_info(name: &str, bytes: u64) -> JsValue {
    let info = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&info, &"name".into(), &name.into());
    let _ = js_sys::Reflect::set(&info, &"bytes".into(), &(bytes as f64).into());
    info.into()
}

/// `performance.now()` in seconds (a page or a worker).
fn performance_now() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| {
            let now: Function = js_sys::Reflect::get(&p, &"now".into())
                .ok()?
                .dyn_into()
                .ok()?;
            now.call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
        / 1000.0
}

/// The generation benchmark of `var bench` on this browser's device (`"webgpu"` or `"cpu"`),
/// at `precision` (`"f32"`, `"f16"`, `"int8"`): a model directory's files when `config_json`
/// is given, else the official preset of `depth` with random weights (the VQ-VAE at 256 px).
/// Resolves to the report as JSON, with `wasm_memory_mib` (this module's linear memory,
/// which only grows: its peak) added.
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen]
pub async fn bench(
    backend: String,
    precision: String,
    depth: usize,
    config_json: Option<String>,
    vqvae: Option<Vec<u8>>,
    var: Option<Vec<u8>>,
    runs: usize,
    top_k: usize,
    decode: bool,
) -> Result<String, JsValue> {
    let device = device_for(&backend).await?;
    let storage: Storage = precision.parse().map_err(js_error)?;
    let model = match (config_json, vqvae, var) {
        (Some(config), Some(vq), Some(tr)) => {
            let files = ModelFiles {
                config_json: &config,
                vqvae: &vq,
                var: &tr,
            };
            let options = LoadOptions {
                read_as: Some(storage),
                ..LoadOptions::default()
            };
            load_files(&files, &device, &options).map_err(js_error)?
        }
        (None, None, None) => {
            Model::random_official(depth, storage, &device, Kernels::Burn).map_err(js_error)?
        }
        _ => {
            return Err(named_error(
                "InvalidArgument",
                "a model needs its config, VQ-VAE and transformer files together",
            ));
        }
    };
    let settings = BenchSettings::reference(runs, top_k, decode);
    let label = format!("{backend} (burn-wgpu on WebGPU)");
    let label = if backend == "webgpu" {
        label
    } else {
        "burn-flex CPU (wasm)".into()
    };
    let report = crate::bench::run(&model, &settings, &label, &performance_now, |_| {})
        .await
        .map_err(js_error)?;
    let mut json = serde_json::to_value(&report)
        .map_err(|e| named_error("InvalidArgument", &e.to_string()))?;
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    let bytes = memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length();
    json["wasm_memory_mib"] = (bytes as f64 / (1024.0 * 1024.0)).into();
    Ok(json.to_string())
}
