//! Training the transformer on the token maps of a frozen VQ-VAE (Section 3.2 of the paper,
//! the reference's `VARTrainer`): teacher forcing through `idxBl_to_var_input`, cross-entropy
//! on every token of every scale, class dropout so that classifier-free guidance works, AdamW
//! with warm-up and cosine decay.
//!
//! The dataset is tokenized once per VQ-VAE (Algorithm 1 on every training image) and the tokens
//! are cached in the run directory, keyed by a fingerprint of the VQ-VAE's weights.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::data::{FashionMnist, Split};
use super::plot;
use super::run::{
    OPTIMIZER_FILE, RunDir, batch_indices, check_loss, check_schedule, optimizer_error, read_config,
};
use crate::config::{ModelConfig, VarConfig};
use crate::error::{Result, VarError};
use crate::generate::generate;
use crate::hash::fnv1a;
use crate::model::Model;
use crate::modeldir::{self, LoadOptions};
use crate::modeldir::{CONFIG_FILE, VAR_FILE, VQVAE_FILE};
use crate::nn::export::export_module;
use crate::nn::{Loader, RandomSource};
use crate::readback::read_f32;
use crate::rng::Rng;
use crate::transformer::Var;
use crate::vqvae::VqVae;
use crate::weights::safetensors::{SafetensorsSource, safetensors_bytes};

/// What `var train var` does (its command-line arguments, parsed by clap).
#[derive(Clone, Debug, clap::Args)]
pub struct VarTraining {
    /// Run directory: `checkpoint/` (a complete model directory plus optimizer.bpk and
    /// state.json), `tokens.bin`, `log.csv`, `loss.png` and `samples.png`.
    #[arg(long)]
    pub out: PathBuf,
    /// The trained VQ-VAE: a directory with config.json and vqvae.safetensors (the
    /// `checkpoint/` of `var train vqvae`, or a model directory). Not needed with --resume.
    #[arg(long)]
    pub vqvae: Option<PathBuf>,
    /// Folder with Fashion-MNIST's gzip IDX files.
    #[arg(long, default_value = super::data::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Transformer depth (default: the Fashion-MNIST preset's).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Transformer width C (default: the preset's).
    #[arg(long)]
    pub width: Option<usize>,
    /// Attention heads (default: the preset's).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Start from a trained transformer (its architecture and weights) instead of random
    /// weights, to re-fit it to a VQ-VAE whose encoder was trained further: a run directory
    /// (its `checkpoint/`) or a model directory such as the shipped `www/models/fashion-mnist`.
    /// What it saves depends on how far the tokens moved (see ARCHITECTURE.md).
    #[arg(long, conflicts_with_all = ["resume", "depth", "width", "heads"])]
    pub init_from: Option<PathBuf>,
    /// Train until this many optimizer steps in total; the learning rate decays over them.
    #[arg(long, default_value_t = 6_000)]
    pub steps: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay (to a tenth of --lr).
    #[arg(long, default_value_t = 300)]
    pub warmup: usize,
    /// Share of training examples whose class is replaced by the null class.
    #[arg(long, default_value_t = 0.1)]
    pub class_dropout: f64,
    /// Training images to tokenize and train on (the first N of the 60,000).
    #[arg(long, default_value_t = 60_000)]
    pub train_images: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seconds between checkpoints (one is always written at the end).
    #[arg(long, default_value_t = 300)]
    pub checkpoint_secs: u64,
    /// Continue the run in `out` from its last checkpoint instead of starting afresh.
    #[arg(long)]
    pub resume: bool,
}

/// Token maps of a set of images: per image all scales' tokens concatenated in scale order.
pub struct TokenSet {
    pub seq_len: usize,
    pub tokens: Vec<u16>,
    pub labels: Vec<u8>,
}

const TOKENS_MAGIC: &[u8; 8] = b"VARTOK01";
const TOKENS_FILE: &str = "tokens.bin";
/// Held-out test images scored at every checkpoint.
const VALIDATION_IMAGES: usize = 1_000;

impl TokenSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Runs Algorithm 1 on the first `count` images of `data`, 100 at a time.
    pub fn encode(
        vae: &VqVae,
        data: &FashionMnist,
        count: usize,
        size: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        let device = vae.quantize.embedding.val().device();
        let count = count.min(data.len());
        let mut tokens = Vec::new();
        let mut seq_len = 0;
        for start in (0..count).step_by(100) {
            let idx: Vec<usize> = (start..(start + 100).min(count)).collect();
            let (per_scale, _) = vae.img_to_tokens(data.batch(&idx, size, &device));
            let mut maps = Vec::with_capacity(per_scale.len());
            for t in per_scale {
                let [_, n] = t.dims();
                let v = t
                    .into_data()
                    .convert::<i64>()
                    .try_into_vec::<i64>()
                    .map_err(|e| VarError::Device(format!("{e:?}")))?;
                maps.push((n, v));
            }
            seq_len = maps.iter().map(|(n, _)| n).sum();
            for b in 0..idx.len() {
                for (n, v) in &maps {
                    tokens.extend(v[b * n..(b + 1) * n].iter().map(|&t| t as u16));
                }
            }
            progress(start + idx.len(), count);
        }
        Ok(Self {
            seq_len,
            tokens,
            labels: data.labels[..count].to_vec(),
        })
    }

    fn to_bytes(&self, fingerprint: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.tokens.len() * 2 + self.labels.len());
        out.extend_from_slice(TOKENS_MAGIC);
        out.extend_from_slice(&fingerprint.to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.seq_len as u32).to_le_bytes());
        self.tokens
            .iter()
            .for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
        out.extend_from_slice(&self.labels);
        out
    }

    /// Reads a token cache; `None` when it belongs to another VQ-VAE or is damaged (it is then
    /// rebuilt, so a bad cache costs time, never correctness).
    fn from_bytes(bytes: &[u8], fingerprint: u64, vocab: usize) -> Option<Self> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        if bytes.get(..8)? != TOKENS_MAGIC
            || u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?) != fingerprint
        {
            return None;
        }
        let (n, l) = (word(16)? as usize, word(20)? as usize);
        let body = bytes.get(24..)?;
        if body.len() != n.checked_mul(l)?.checked_mul(2)?.checked_add(n)? {
            return None;
        }
        let tokens: Vec<u16> = body[..n * l * 2]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let labels = body[n * l * 2..].to_vec();
        if tokens.iter().any(|&t| t as usize >= vocab) || labels.iter().any(|&c| c > 9) {
            return None;
        }
        Some(Self {
            seq_len: l,
            tokens,
            labels,
        })
    }

    /// The batch at `idx`: tokens per scale (`[B, pn²]` each), all targets `[B·L]`, labels.
    fn batch(
        &self,
        idx: &[usize],
        patch_nums: &[usize],
        device: &Device,
    ) -> (Vec<Tensor<2, Int>>, Tensor<1, Int>, Vec<usize>) {
        let b = idx.len();
        let l = self.seq_len;
        let mut per_scale = Vec::with_capacity(patch_nums.len());
        let mut offset = 0;
        for pn in patch_nums {
            let n = pn * pn;
            let v: Vec<i64> = idx
                .iter()
                .flat_map(|&i| {
                    self.tokens[i * l + offset..i * l + offset + n]
                        .iter()
                        .map(|&t| t as i64)
                })
                .collect();
            per_scale.push(Tensor::from_data(TensorData::new(v, [b, n]), device));
            offset += n;
        }
        let targets: Vec<i64> = idx
            .iter()
            .flat_map(|&i| self.tokens[i * l..(i + 1) * l].iter().map(|&t| t as i64))
            .collect();
        let labels = idx.iter().map(|&i| self.labels[i] as usize).collect();
        (
            per_scale,
            Tensor::from_data(TensorData::new(targets, [b * l]), device),
            labels,
        )
    }
}

/// Mean cross-entropy and top-1 accuracy of `logits` `[B, L, V]` against `targets` `[B·L]`.
pub fn token_loss(logits: Tensor<3>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
    let [b, l, v] = logits.dims();
    let logits = logits.reshape([b * l, v]);
    let hit = logits
        .clone()
        .argmax(1)
        .reshape([b * l])
        .equal(targets.clone())
        .float()
        .mean();
    let nll = log_softmax(logits, 1)
        .gather(1, targets.reshape([b * l, 1]))
        .mean()
        .neg();
    (nll, hit)
}

/// The teacher-forced loss of `var` on a batch, the VQ-VAE (frozen, on the plain device)
/// providing `idxBl_to_var_input`.
fn batch_loss(
    var: &Var,
    vae: &VqVae,
    set: &TokenSet,
    idx: &[usize],
    labels: Vec<usize>,
    device: &Device,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let frozen = vae.quantize.embedding.val().device();
    let patch_nums = var.patch_nums().to_vec();
    let (per_scale, _, _) = set.batch(idx, &patch_nums, &frozen);
    let x = vae.quantize.teacher_forcing_input(&per_scale);
    // A constant input of the tracked graph (no copy): the VQ-VAE gets no gradient.
    let x = if device.is_autodiff() {
        x.autodiff()
    } else {
        x
    };
    let (_, targets, _) = set.batch(idx, &patch_nums, device);
    let n = labels.len();
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(labels.into_iter().map(|c| c as i64).collect(), [n]),
        device,
    );
    Ok(token_loss(var.forward(labels, x), targets))
}

/// Warm-up then cosine decay from `lr` to `lr / 10` at `steps`.
pub fn learning_rate(lr: f64, step: usize, warmup: usize, steps: usize) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let t = ((step - warmup) as f64 / (steps.saturating_sub(warmup)).max(1) as f64).min(1.0);
    lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// One logged step.
#[derive(Clone, Debug)]
pub struct VarStepReport {
    pub step: usize,
    pub loss: f32,
    pub accuracy: f32,
    pub lr: f64,
    pub sequences_per_second: f64,
    /// Teacher-forced loss and accuracy on held-out test images, at checkpoints only.
    pub validation: Option<(f32, f32)>,
}

/// What the trainer tells its caller.
pub enum VarProgress<'a> {
    Tokenizing { done: usize, total: usize },
    Step(&'a VarStepReport),
}

#[derive(Serialize, Deserialize)]
struct VarTrainState {
    step: usize,
    seed: u64,
    batch: usize,
    /// [`tokenizer_fingerprint`] of the frozen VQ-VAE: tokens from another VQ-VAE do not fit.
    vqvae_fingerprint: u64,
}

/// FNV-1a over the tensors that decide the token maps (encoder, quant_conv, codebook, φ), by
/// name and value. Decoder fine-tuning leaves it unchanged: its tokens, and a transformer
/// trained on them, still fit.
pub fn tokenizer_fingerprint(vqvae_safetensors: &[u8]) -> Result<u64> {
    let src = SafetensorsSource::new(vqvae_safetensors, VQVAE_FILE)?;
    let mut names = src.names();
    names.retain(|n| !n.starts_with("decoder.") && !n.starts_with("post_quant_conv."));
    names.sort();
    let mut bytes = Vec::new();
    for n in names {
        let (shape, values) = src.read_any(&n)?;
        bytes.extend_from_slice(n.as_bytes());
        shape
            .iter()
            .for_each(|d| bytes.extend_from_slice(&(*d as u64).to_le_bytes()));
        values
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    }
    Ok(fnv1a(&bytes))
}

/// The frozen VQ-VAE: its config, bytes, fingerprint and module on the plain device.
struct FrozenVqvae {
    config: ModelConfig,
    bytes: Vec<u8>,
    fingerprint: u64,
    vae: VqVae,
}

fn load_frozen(dir: &Path, device: &Device) -> Result<FrozenVqvae> {
    let (config, vae, bytes) = super::vqvae::load_trained(dir, device)?;
    Ok(FrozenVqvae {
        fingerprint: tokenizer_fingerprint(&bytes)?,
        config,
        bytes,
        vae,
    })
}

/// The transformer of `config` from `w` (random or trained weights).
fn load_var(w: &mut Loader<'_>, config: &ModelConfig) -> Result<Var> {
    Var::load(
        w,
        &config.var,
        &config.patch_nums,
        config.vqvae.vocab_size,
        config.vqvae.z_channels,
    )
}

fn var_config(opts: &VarTraining) -> VarConfig {
    let mut v = ModelConfig::fashion_mnist().var;
    v.depth = opts.depth.unwrap_or(v.depth);
    v.embed_dim = opts.width.unwrap_or(v.embed_dim);
    v.num_heads = opts.heads.unwrap_or(v.num_heads);
    v
}

/// Tokens for `data` under `frozen`, from the cache file when it matches.
fn tokens_cached(
    path: &Path,
    frozen: &FrozenVqvae,
    data: &FashionMnist,
    count: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TokenSet> {
    let vocab = frozen.config.vqvae.vocab_size;
    if let Ok(bytes) = std::fs::read(path)
        && let Some(set) = TokenSet::from_bytes(&bytes, frozen.fingerprint, vocab)
        && set.len() == count.min(data.len())
        && set.labels[..] == data.labels[..set.len()]
    {
        return Ok(set);
    }
    let set = TokenSet::encode(&frozen.vae, data, count, frozen.config.image_size, progress)?;
    crate::files::write_atomically(path, &set.to_bytes(frozen.fingerprint))?;
    Ok(set)
}

/// Teacher-forced loss and accuracy over a whole token set, without gradients.
fn evaluate(var: &Var, vae: &VqVae, set: &TokenSet) -> Result<(f32, f32)> {
    let device = vae.quantize.embedding.val().device();
    let (mut loss, mut acc, mut n) = (0f64, 0f64, 0usize);
    for start in (0..set.len()).step_by(100) {
        let idx: Vec<usize> = (start..(start + 100).min(set.len())).collect();
        let labels = idx.iter().map(|&i| set.labels[i] as usize).collect();
        let (l, a) = batch_loss(var, vae, set, &idx, labels, &device)?;
        loss += l.into_scalar::<f32>() as f64 * idx.len() as f64;
        acc += a.into_scalar::<f32>() as f64 * idx.len() as f64;
        n += idx.len();
    }
    Ok(((loss / n as f64) as f32, (acc / n as f64) as f32))
}

/// A grid of samples: one row per class, `per_class` seeds, with the model's default sampling.
pub fn sample_grid(model: &Model, per_class: usize, seed: u64) -> Result<Vec<u8>> {
    let classes = model.config.var.num_classes;
    let labels: Vec<usize> = (0..classes)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let params = model.config.sampling.with_seed(seed);
    let images = pollster::block_on(async {
        let t = generate(model, &labels, &params, None, |_| ControlFlow::Continue(())).await?;
        read_f32(t).await
    })?;
    let size = model.config.image_size;
    let rgb = Model::to_rgb8(&images, labels.len(), size);
    crate::picture::grid_png(&rgb, size, per_class)
}

/// Trains (or resumes training) the transformer.
pub fn train_var(
    opts: &VarTraining,
    device: &Device,
    mut report: impl FnMut(VarProgress),
) -> Result<()> {
    check_schedule(opts.batch, opts.steps, opts.lr)?;
    if !(0.0..1.0).contains(&opts.class_dropout) {
        return Err(VarError::InvalidArgument(
            "--class-dropout must be in [0, 1)".into(),
        ));
    }
    let plain = device.clone().inner();
    let run = RunDir::new(&opts.out);
    let mut optim = AdamWConfig::new()
        .with_beta_2(0.95)
        .with_weight_decay(0.05)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(2.0)))
        .init();
    let (frozen, config, mut var, mut step) = if opts.resume {
        let state: VarTrainState = run.read_state()?;
        if state.batch != opts.batch || state.seed != opts.seed {
            return Err(VarError::InvalidArgument(format!(
                "the checkpoint was trained with --batch {} --seed {}; resume with the same values",
                state.batch, state.seed
            )));
        }
        let frozen = load_frozen(&run.checkpoint(), &plain)?;
        if let Some(dir) = &opts.vqvae {
            let path = dir.join(VQVAE_FILE);
            let given = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
            if tokenizer_fingerprint(&given)? != state.vqvae_fingerprint {
                return Err(VarError::InvalidArgument(format!(
                    "{} is not the VQ-VAE this run was trained on; drop --vqvae to resume, or start a new --out",
                    dir.display()
                )));
            }
        }
        let config = run.read_config()?;
        let bytes = run.read(VAR_FILE)?;
        let mut src = SafetensorsSource::new(&bytes, VAR_FILE)?;
        let mut w = Loader::new(&mut src, device);
        let var = load_var(&mut w, &config)?;
        w.finish()?;
        optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(
                run.read(OPTIMIZER_FILE)?,
            ))
            .map_err(|e| optimizer_error(&run, e))?;
        (frozen, config, var, state.step)
    } else {
        run.refuse_existing()?;
        let dir = opts.vqvae.as_ref().ok_or_else(|| {
            VarError::InvalidArgument(
                "--vqvae is needed to start a run: the directory of a trained VQ-VAE".into(),
            )
        })?;
        let frozen = load_frozen(dir, &plain)?;
        let mut config = frozen.config.clone();
        let var = match &opts.init_from {
            Some(from) => {
                let run_checkpoint = RunDir::new(from).checkpoint();
                let from = if run_checkpoint.is_dir() {
                    run_checkpoint
                } else {
                    from.clone()
                };
                let trained = read_config(&from)?;
                if trained.patch_nums != config.patch_nums
                    || trained.vqvae.vocab_size != config.vqvae.vocab_size
                    || trained.vqvae.z_channels != config.vqvae.z_channels
                {
                    return Err(VarError::InvalidArgument(format!(
                        "--init-from {}: its transformer was trained for other token maps (patch_nums, vocabulary or z_channels differ from {})",
                        from.display(),
                        dir.display()
                    )));
                }
                config.var = trained.var;
                config.validate()?;
                let path = from.join(VAR_FILE);
                let bytes = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
                let mut src = SafetensorsSource::new(&bytes, &path.display().to_string())?;
                let mut w = Loader::new(&mut src, device);
                let var = load_var(&mut w, &config)?;
                w.finish()?;
                var
            }
            None => {
                config.var = var_config(opts);
                config.validate()?;
                let mut src = RandomSource::new(opts.seed, 0.02);
                load_var(&mut Loader::new(&mut src, device), &config)?
            }
        };
        (frozen, config, var, 0)
    };
    std::fs::create_dir_all(&opts.out).map_err(|e| VarError::io(&opts.out, e))?;
    let mut tokenizing = |done, total| report(VarProgress::Tokenizing { done, total });
    let train = tokens_cached(
        &opts.out.join(TOKENS_FILE),
        &frozen,
        &FashionMnist::load(&opts.data, Split::Train)?,
        opts.train_images,
        &mut tokenizing,
    )?;
    let validation = TokenSet::encode(
        &frozen.vae,
        &FashionMnist::load(&opts.data, Split::Test)?,
        VALIDATION_IMAGES,
        config.image_size,
        |_, _| {},
    )?;
    let mut log = run.log(
        "step,loss,accuracy,lr,sequences_per_second,val_loss,val_accuracy",
        step,
    )?;
    let num_classes = config.var.num_classes;
    let mut last_checkpoint = Instant::now();
    while step < opts.steps {
        let started = Instant::now();
        let idx = batch_indices(train.len(), opts.batch, step, opts.seed);
        // Class dropout from a per-step stream, so a resumed run drops the same labels.
        let mut rng = Rng::new(opts.seed ^ 0xC1A5_5D20 ^ (step as u64).wrapping_mul(0x2545_F491));
        let labels: Vec<usize> = idx
            .iter()
            .map(|&i| {
                if rng.uniform() < opts.class_dropout {
                    num_classes
                } else {
                    train.labels[i] as usize
                }
            })
            .collect();
        let (loss, accuracy) = batch_loss(&var, &frozen.vae, &train, &idx, labels, device)?;
        let loss_value = loss.clone().into_scalar::<f32>();
        check_loss(loss_value, step)?;
        let grads = GradientsParams::from_grads(loss.backward(), &var);
        let lr = learning_rate(opts.lr, step, opts.warmup, opts.steps);
        var = optim.step(lr, var, grads);
        step += 1;
        let mut rep = VarStepReport {
            step,
            loss: loss_value,
            accuracy: accuracy.into_scalar::<f32>(),
            lr,
            sequences_per_second: opts.batch as f64 / started.elapsed().as_secs_f64(),
            validation: None,
        };
        if step == opts.steps || last_checkpoint.elapsed().as_secs() >= opts.checkpoint_secs {
            let valid = var.valid();
            rep.validation = Some(evaluate(&valid, &frozen.vae, &validation)?);
            let weights = safetensors_bytes(&export_module(&var))?;
            let optimizer = optim.into_bytes().map_err(|e| optimizer_error(&run, e))?;
            let state = VarTrainState {
                step,
                seed: opts.seed,
                batch: opts.batch,
                vqvae_fingerprint: frozen.fingerprint,
            };
            let config_json = config.to_json();
            run.save(
                &[
                    (CONFIG_FILE, config_json.as_bytes()),
                    (VQVAE_FILE, &frozen.bytes),
                    (VAR_FILE, &weights),
                ],
                &optimizer,
                &state,
            )?;
            write_log_row(&mut log, &rep)?;
            // Derived artefacts: a failure here (say, no font for the plot) costs a picture,
            // never the run.
            let model = Model::from_parts(config.clone(), frozen.vae.clone(), valid, &plain);
            let grid = sample_grid(&model, 8, 0)?;
            crate::files::write_atomically(&opts.out.join("samples.png"), &grid)?;
            let _ = plot::loss_curve(
                log.path(),
                &opts.out.join("loss.png"),
                "transformer: cross-entropy per token",
                &["loss", "val_loss"],
            );
            last_checkpoint = Instant::now();
        } else {
            write_log_row(&mut log, &rep)?;
        }
        report(VarProgress::Step(&rep));
    }
    Ok(())
}

/// What `var package` does: assembles a model directory from a transformer run.
#[derive(Clone, Debug, clap::Args)]
pub struct Packaging {
    /// Run directory of `var train var`.
    #[arg(long)]
    pub run: PathBuf,
    /// A VQ-VAE directory to ship instead of the run's own copy: the same encoder and codebook
    /// with a fine-tuned decoder (`var train vqvae --decoder-only`); anything else is refused.
    #[arg(long)]
    pub vqvae: Option<PathBuf>,
    /// Default classifier-free guidance recorded in the model (what the page starts with).
    #[arg(long)]
    pub cfg: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Output model directory (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes config.json, vqvae.safetensors and var.safetensors of a trained run to `out`.
pub fn package(opts: &Packaging) -> Result<ModelConfig> {
    let run = RunDir::new(&opts.run);
    let mut config = run.read_config()?;
    let state: VarTrainState = run.read_state()?;
    let vqvae = match &opts.vqvae {
        Some(dir) => {
            let path = dir.join(VQVAE_FILE);
            let bytes = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
            if tokenizer_fingerprint(&bytes)? != state.vqvae_fingerprint {
                return Err(VarError::InvalidArgument(format!(
                    "{} has another encoder or codebook than the VQ-VAE the transformer was trained on",
                    path.display()
                )));
            }
            // Same tokens, but the decoder may have grown since (`--grow-from`).
            config.vqvae = super::run::read_config(dir)?.vqvae;
            bytes
        }
        None => run.read(VQVAE_FILE)?,
    };
    let s = &mut config.sampling;
    s.cfg = opts.cfg.unwrap_or(s.cfg);
    s.top_k = opts.top_k.unwrap_or(s.top_k);
    s.top_p = opts.top_p.unwrap_or(s.top_p);
    s.validate()?;
    let var = run.read(VAR_FILE)?;
    // Loading proves the three files fit together before anything is written.
    let json = config.to_json();
    let files = modeldir::ModelFiles {
        config_json: &json,
        vqvae: &vqvae,
        var: &var,
    };
    modeldir::load_files(&files, &Device::flex(), &LoadOptions::default())?;
    crate::files::write_files_atomically(
        &opts.out,
        &[
            (CONFIG_FILE, json.as_bytes()),
            (VQVAE_FILE, &vqvae),
            (VAR_FILE, &var),
        ],
    )?;
    Ok(config)
}

fn write_log_row(log: &mut super::run::Log, rep: &VarStepReport) -> Result<()> {
    let (vl, va) = rep
        .validation
        .map(|(l, a)| (format!("{l}"), format!("{a}")))
        .unwrap_or_default();
    log.row(&format!(
        "{},{},{},{:.3e},{:.1},{vl},{va}",
        rep.step, rep.loss, rep.accuracy, rep.lr, rep.sequences_per_second
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::largest_difference;

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        assert!((learning_rate(1.0, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 100, 10, 100) - 0.1).abs() < 1e-12);
        assert!(learning_rate(1.0, 55, 10, 100) < 0.6);
    }

    /// A tiny random VQ-VAE written as a directory `var train var --vqvae` accepts.
    fn tiny_vqvae_dir(root: &Path) -> (ModelConfig, PathBuf) {
        let mut config = crate::train::tiny_config();
        config.image_size = 32;
        config.patch_nums = vec![1, 2, 4, 8, 16];
        let model = Model::random(config.clone(), 5, &Device::flex()).unwrap();
        let dir = root.join("vqvae");
        let weights = safetensors_bytes(&export_module(&model.vqvae)).unwrap();
        crate::files::write_files_atomically(
            &dir,
            &[
                (CONFIG_FILE, config.to_json().as_bytes()),
                (VQVAE_FILE, &weights),
            ],
        )
        .unwrap();
        (config, dir)
    }

    fn tiny_opts(root: &Path, vqvae: &Path, name: &str, steps: usize, resume: bool) -> VarTraining {
        VarTraining {
            out: root.join(name),
            vqvae: Some(vqvae.to_path_buf()),
            data: PathBuf::from(crate::train::data::DEFAULT_DIR),
            depth: Some(1),
            width: Some(32),
            heads: Some(2),
            steps,
            batch: 4,
            lr: 1e-3,
            warmup: 2,
            class_dropout: 0.5,
            train_images: 16,
            seed: 3,
            checkpoint_secs: 3600,
            resume,
            init_from: None,
        }
    }

    /// The transformer weights of a run's checkpoint, sorted by name.
    fn run_weights(run: &Path) -> Vec<(String, Vec<f32>)> {
        crate::train::tensors_of(&run.join("checkpoint").join(VAR_FILE))
    }

    #[test]
    fn a_warm_start_begins_from_the_given_runs_transformer() {
        let root = tempfile::tempdir().unwrap();
        let (_, dir) = tiny_vqvae_dir(root.path());
        let device = Device::flex().autodiff();
        train_var(
            &tiny_opts(root.path(), &dir, "base", 3, false),
            &device,
            |_| {},
        )
        .unwrap();
        // One step at a negligible learning rate: what the run saves is its starting point.
        let start_of = |name: &str, init_from: Option<PathBuf>| {
            let mut o = tiny_opts(root.path(), &dir, name, 1, false);
            o.lr = 1e-9;
            o.init_from = init_from;
            if o.init_from.is_some() {
                (o.depth, o.width, o.heads) = (None, None, None);
            }
            train_var(&o, &device, |_| {}).unwrap();
            run_weights(&root.path().join(name))
        };
        let base = run_weights(&root.path().join("base"));
        let warm = start_of("warm", Some(root.path().join("base")));
        let fresh = start_of("fresh", None);
        // A model directory (here the run's checkpoint/ itself) is an equally good start.
        let from_dir = start_of(
            "from-dir",
            Some(root.path().join("base").join("checkpoint")),
        );
        assert!(largest_difference(&base, &warm) < 1e-5);
        assert!(largest_difference(&base, &from_dir) < 1e-5);
        assert!(largest_difference(&base, &fresh) > 1e-3);
        // The warm run's config is the base run's architecture.
        let config = read_config(&root.path().join("warm").join("checkpoint")).unwrap();
        assert_eq!((config.var.depth, config.var.embed_dim), (1, 32));
        // A run trained for other token maps is refused by name.
        let base_ckpt = root.path().join("base").join("checkpoint");
        let mut changed = read_config(&base_ckpt).unwrap();
        changed.vqvae.vocab_size += 1;
        std::fs::write(base_ckpt.join(CONFIG_FILE), changed.to_json()).unwrap();
        let mut o = tiny_opts(root.path(), &dir, "refused", 1, false);
        o.init_from = Some(root.path().join("base"));
        let err = train_var(&o, &device, |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("--init-from") && err.contains("patch_nums"),
            "{err}"
        );
    }

    #[test]
    fn adamw_steps_lower_the_teacher_forced_loss() {
        let root = tempfile::tempdir().unwrap();
        let (config, dir) = tiny_vqvae_dir(root.path());
        let frozen = load_frozen(&dir, &Device::flex()).unwrap();
        let data = FashionMnist::load(Path::new(crate::train::data::DEFAULT_DIR), Split::Test)
            .expect("Fashion-MNIST is not installed: run ./scripts/setup.sh");
        let set = TokenSet::encode(&frozen.vae, &data, 8, 32, |_, _| {}).unwrap();
        assert_eq!(set.seq_len, 1 + 4 + 16 + 64 + 256);
        let device = Device::flex().autodiff();
        let mut var = Model::random(config, 1, &device).unwrap().var;
        let idx: Vec<usize> = (0..8).collect();
        let labels: Vec<usize> = idx.iter().map(|&i| set.labels[i] as usize).collect();
        let loss = |var: &Var| {
            batch_loss(var, &frozen.vae, &set, &idx, labels.clone(), &device)
                .unwrap()
                .0
        };
        let first = loss(&var).into_scalar::<f32>();
        assert!(
            (first - (16f32).ln()).abs() < 0.5,
            "starts near ln(vocab): {first}"
        );
        let mut optim = AdamWConfig::new().init();
        for _ in 0..15 {
            let grads = GradientsParams::from_grads(loss(&var).backward(), &var);
            var = optim.step(1e-2, var, grads);
        }
        let last = loss(&var).into_scalar::<f32>();
        assert!(last < 0.75 * first, "loss {first} -> {last}");
    }

    #[test]
    fn resumed_training_equals_uninterrupted_training() {
        let root = tempfile::tempdir().unwrap();
        let (_, dir) = tiny_vqvae_dir(root.path());
        let device = Device::flex().autodiff();
        let opts = |name: &str, steps: usize, resume: bool| {
            tiny_opts(root.path(), &dir, name, steps, resume)
        };
        let mut validation = None;
        train_var(&opts("straight", 4, false), &device, |p| {
            if let VarProgress::Step(r) = p {
                validation = validation.or(r.validation);
            }
        })
        .unwrap();
        assert!(validation.is_some_and(|(l, a)| l.is_finite() && (0.0..=1.0).contains(&a)));
        train_var(&opts("resumed", 2, false), &device, |_| {}).unwrap();
        let err = train_var(&opts("resumed", 4, false), &device, |_| {}).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
        // The token cache is reused on resume, and the run continues where it stopped.
        let mut tokenized = false;
        train_var(&opts("resumed", 4, true), &device, |p| {
            tokenized |= matches!(p, VarProgress::Tokenizing { .. });
        })
        .unwrap();
        assert!(!tokenized, "resuming re-tokenized the training set");
        let read = |name: &str| {
            std::fs::read(root.path().join(name).join("checkpoint").join(VAR_FILE)).unwrap()
        };
        let (a, b) = (read("straight"), read("resumed"));
        let (sa, sb) = (
            SafetensorsSource::new(&a, "a").unwrap(),
            SafetensorsSource::new(&b, "b").unwrap(),
        );
        let mut names = sa.names();
        names.sort();
        assert_eq!(names.len(), sb.names().len());
        for n in names {
            let (va, vb) = (sa.read_any(&n).unwrap().1, sb.read_any(&n).unwrap().1);
            let worst = va
                .iter()
                .zip(&vb)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{n} differs by {worst} after resuming");
        }
        // The checkpoint is a model directory: it loads and generates.
        let model = modeldir::load(
            &root.path().join("resumed").join("checkpoint"),
            &Device::flex(),
            &LoadOptions::default(),
        )
        .unwrap();
        assert!(sample_grid(&model, 2, 0).is_ok());
        assert!(root.path().join("resumed/samples.png").exists());
        // A different VQ-VAE is refused on resume.
        let other = root.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let (_, dir2) = tiny_vqvae_dir(&other);
        let mut o = tiny_opts(root.path(), &dir2, "resumed", 5, true);
        let bytes = std::fs::read(dir2.join(VQVAE_FILE)).unwrap();
        // Same seed gives the same weights; perturb the codebook so the tokens would differ.
        let src = SafetensorsSource::new(&bytes, "x").unwrap();
        let mut tensors: Vec<crate::weights::safetensors::NamedTensor> = src
            .names()
            .into_iter()
            .map(|n| {
                let (shape, mut v) = src.read_any(&n).unwrap();
                if n == "quantize.embedding.weight" {
                    v[0] += 1.0;
                }
                (n, shape, v)
            })
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        std::fs::write(dir2.join(VQVAE_FILE), safetensors_bytes(&tensors).unwrap()).unwrap();
        o.vqvae = Some(dir2);
        let err = train_var(&o, &device, |_| {}).unwrap_err().to_string();
        assert!(err.contains("not the VQ-VAE"), "{err}");
    }

    #[test]
    fn token_cache_round_trips_and_rejects_another_vqvae() {
        let set = TokenSet {
            seq_len: 3,
            tokens: vec![1, 2, 3, 4, 5, 6],
            labels: vec![0, 9],
        };
        let bytes = set.to_bytes(42);
        let back = TokenSet::from_bytes(&bytes, 42, 8).unwrap();
        assert_eq!(
            (back.tokens, back.labels, back.seq_len),
            (set.tokens, set.labels, 3)
        );
        assert!(TokenSet::from_bytes(&bytes, 43, 8).is_none());
        assert!(TokenSet::from_bytes(&bytes[..bytes.len() - 1], 42, 8).is_none());
        assert!(
            TokenSet::from_bytes(&bytes, 42, 6).is_none(),
            "token 6 ≥ vocab 6"
        );
    }
}
