//! Training the transformer on the token maps of a frozen VQ-VAE (Section 3.2 of the paper,
//! the reference's `VARTrainer`): teacher forcing through `idxBl_to_var_input`, cross-entropy
//! on every token of every scale, class dropout so that classifier-free guidance works, AdamW
//! with warm-up and cosine decay.
//!
//! The dataset is tokenized once per VQ-VAE (Algorithm 1 on every training image) and the tokens
//! are cached in the run directory, keyed by a fingerprint of the VQ-VAE's weights.
//!
//! This file holds the options and the loop; the other concepts have their own files: `tokens`
//! (the frozen VQ-VAE, the token cache and its fingerprint), `loss` (the teacher-forced
//! objective), `validation` (what a checkpoint is judged by) and `package` (`var package`). The
//! learning-rate schedule is [`super::schedule::warmup_cosine_to_tenth`].

mod grow;
mod loss;
mod package;
mod tokens;
mod validation;

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use self::loss::token_loss;
pub use self::package::{Packaging, package};
pub use self::tokens::{TokenSet, tokenizer_fingerprint};
pub use self::validation::sample_grid;
/// The transformer's schedule, still reachable by the name it had when it lived here.
pub use super::schedule::warmup_cosine_to_tenth as learning_rate;

use self::loss::batch_loss;
use self::tokens::{FrozenVqvae, TOKENS_FILE, load_frozen, tokens_cached};
use self::validation::{VALIDATION_IMAGES, evaluate};
use super::data::{DATA_FILE, DataOptions, DataRecord, TrainingData, fit_for};
use super::plot;
use super::run::{
    OPTIMIZER_FILE, RunDir, batch_indices, check_loss, check_schedule, optimizer_error, read_config,
};
use crate::config::{ModelConfig, VarConfig};
use crate::error::{Result, VarError};
use crate::model::Model;
use crate::modeldir::{CONFIG_FILE, VAR_FILE, VQVAE_FILE};
use crate::nn::export::export_module;
use crate::nn::{Loader, RandomSource};
use crate::rng::Rng;
use crate::transformer::Var;
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
    /// The training images: a folder with Fashion-MNIST's gzip IDX files, or an image folder
    /// with one subfolder per class. They are fitted as the VQ-VAE's config records, split
    /// with --seed and --test-share; the classes become the transformer's.
    #[arg(long, default_value = super::data::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Share of each class of an image folder held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub test_share: f64,
    /// Transformer depth (default: the Fashion-MNIST preset's). With --init-from, a depth
    /// above the trained model's grows it: the trained blocks are kept and the new ones, added
    /// after them, start as the identity (a zero `ada_lin`), so training resumes from its loss.
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
    #[arg(long, conflicts_with_all = ["resume", "width", "heads"])]
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
    /// The data is loaded: one line on it (the full record is the run's `data.txt`).
    Data(&'a str),
    Tokenizing {
        done: usize,
        total: usize,
    },
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

/// Trains (or resumes training) the transformer on `device`.
pub fn train_var(
    opts: &VarTraining,
    device: &Device,
    report: impl FnMut(VarProgress),
) -> Result<()> {
    train_var_on(opts, std::slice::from_ref(device), report)
}

/// [`train_var`] with each batch split over `devices` (the first holds the model between
/// steps and runs the frozen VQ-VAE): data parallelism through burn's `step_multi`.
pub fn train_var_on(
    opts: &VarTraining,
    devices: &[Device],
    mut report: impl FnMut(VarProgress),
) -> Result<()> {
    let device = devices
        .first()
        .ok_or_else(|| VarError::InvalidArgument("no training device".into()))?;
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
    // The data is fitted as the VQ-VAE's config records; its classes become the transformer's.
    let load_data = |frozen: &FrozenVqvae| {
        let c = &frozen.config;
        let options = DataOptions {
            image_size: c.image_size,
            fit: fit_for(&opts.data, None, c.fit, c.image_size),
            split_seed: opts.seed,
            test_share: opts.test_share,
        };
        TrainingData::load(&opts.data, &options)
    };
    let (frozen, data, config, mut var, mut step) = if opts.resume {
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
        let data = load_data(&frozen)?;
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
        (frozen, data, config, var, state.step)
    } else {
        run.refuse_existing()?;
        let dir = opts.vqvae.as_ref().ok_or_else(|| {
            VarError::InvalidArgument(
                "--vqvae is needed to start a run: the directory of a trained VQ-VAE".into(),
            )
        })?;
        let frozen = load_frozen(dir, &plain)?;
        let data = load_data(&frozen)?;
        let classes = &data.record.classes;
        let mut config = frozen.config.clone();
        config.fit = Some(data.record.fit);
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
                    || trained.var.num_classes != classes.len()
                {
                    return Err(VarError::InvalidArgument(format!(
                        "--init-from {}: its transformer was trained for other token maps or classes (patch_nums, vocabulary, z_channels or the class count differ from {} and --data)",
                        from.display(),
                        dir.display()
                    )));
                }
                let trained_depth = trained.var.depth;
                config.var = trained.var;
                if let Some(depth) = opts.depth {
                    if depth < trained_depth {
                        return Err(VarError::InvalidArgument(format!(
                            "--depth {depth} with --init-from {}: its transformer has {trained_depth} blocks, and a model can only be grown deeper, not cut",
                            from.display()
                        )));
                    }
                    config.var.depth = depth;
                }
                config.class_names = classes.clone();
                config.validate()?;
                let path = from.join(VAR_FILE);
                let bytes = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
                let mut trained_src = SafetensorsSource::new(&bytes, &path.display().to_string())?;
                let mut src = grow::GrownSource::new(&mut trained_src, trained_depth, opts.seed);
                let mut w = Loader::new(&mut src, device);
                let var = load_var(&mut w, &config)?;
                w.finish()?;
                var
            }
            None => {
                config.var = var_config(opts);
                config.var.num_classes = classes.len();
                config.class_names = classes.clone();
                config.validate()?;
                let mut src = RandomSource::new(opts.seed, 0.02);
                load_var(&mut Loader::new(&mut src, device), &config)?
            }
        };
        (frozen, data, config, var, 0)
    };
    if opts.resume
        && let Some(saved) = DataRecord::read(&run.checkpoint())?
    {
        data.record.check_resumes(&saved)?;
    }
    if config.class_names != data.record.classes {
        return Err(VarError::InvalidArgument(format!(
            "the run's transformer has the classes [{}] but --data has [{}]; resume with the same data",
            config.class_names.join(", "),
            data.record.classes.join(", ")
        )));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| VarError::io(&opts.out, e))?;
    data.write_records(&opts.out)?;
    report(VarProgress::Data(&data.headline(&opts.out)));
    let data_json = data.record.to_json();
    let mut tokenizing = |done, total| report(VarProgress::Tokenizing { done, total });
    let train = tokens_cached(
        &opts.out.join(TOKENS_FILE),
        &frozen,
        &data.train,
        opts.train_images,
        config.var.num_classes,
        &mut tokenizing,
    )?;
    let validation = TokenSet::encode(&frozen.vae, &data.test, VALIDATION_IMAGES, |_, _| {})?;
    drop(data);
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
        let lr = super::schedule::warmup_cosine_to_tenth(opts.lr, step, opts.warmup, opts.steps);
        let (loss_value, accuracy);
        if let [device] = devices {
            let (loss, acc) = batch_loss(&var, &frozen.vae, &train, &idx, labels, device)?;
            (loss_value, accuracy) = (loss.clone().into_scalar::<f32>(), acc.into_scalar::<f32>());
            check_loss(loss_value, step)?;
            let grads = GradientsParams::from_grads(loss.backward(), &var);
            var = optim.step(lr, var, grads);
        } else {
            let (grads, logged) =
                super::parallel::gradients(&var, devices, idx.len(), |var, share, device| {
                    let (share, labels) = (&idx[share.clone()], labels[share].to_vec());
                    let (loss, acc) = batch_loss(var, &frozen.vae, &train, share, labels, device)?;
                    let logged = vec![loss.clone().into_scalar::<f32>(), acc.into_scalar::<f32>()];
                    Ok((loss, logged))
                })?;
            (loss_value, accuracy) = (logged[0], logged[1]);
            check_loss(loss_value, step)?;
            // step_multi leaves each parameter on the device that summed its gradients;
            // the model lives on the first device between steps.
            var = optim.step_multi(lr, var, grads).fork(device);
        }
        step += 1;
        let mut rep = VarStepReport {
            step,
            loss: loss_value,
            accuracy,
            lr,
            sequences_per_second: opts.batch as f64 / started.elapsed().as_secs_f64(),
            validation: None,
        };
        if step == opts.steps || last_checkpoint.elapsed().as_secs() >= opts.checkpoint_secs {
            let valid = var.valid();
            rep.validation = Some(evaluate(&valid, &frozen.vae, &validation)?);
            let weights = safetensors_bytes(&export_module(&var)?)?;
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
                    (DATA_FILE, data_json.as_bytes()),
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
    use crate::modeldir::{self, LoadOptions};
    use crate::train::largest_difference;
    use burn::tensor::{Int, Tensor, TensorData};
    use std::path::Path;

    /// A tiny random VQ-VAE written as a directory `var train var --vqvae` accepts.
    pub(super) fn tiny_vqvae_dir(root: &Path) -> (ModelConfig, PathBuf) {
        let mut config = crate::train::tiny_config();
        config.image_size = 32;
        config.patch_nums = vec![1, 2, 4, 8, 16];
        let model = Model::random(config.clone(), 5, &Device::flex()).unwrap();
        let dir = root.join("vqvae");
        let weights = safetensors_bytes(&export_module(&model.vqvae).unwrap()).unwrap();
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
            test_share: 0.1,
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

    /// A temporary root holding a tiny VQ-VAE and a run `base` trained on it for 3 steps:
    /// (the root, the VQ-VAE's directory, the training device).
    fn trained_base() -> (tempfile::TempDir, PathBuf, Device) {
        let root = tempfile::tempdir().unwrap();
        let (_, dir) = tiny_vqvae_dir(root.path());
        let device = Device::flex().autodiff();
        train_var(
            &tiny_opts(root.path(), &dir, "base", 3, false),
            &device,
            |_| {},
        )
        .unwrap();
        (root, dir, device)
    }

    #[test]
    fn a_warm_start_begins_from_the_given_runs_transformer() {
        let (root, dir, device) = trained_base();
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
    fn a_grown_transformer_starts_as_the_trained_one() {
        let (root, dir, device) = trained_base();
        let mut o = tiny_opts(root.path(), &dir, "grown", 1, false);
        (o.depth, o.width, o.heads) = (Some(3), None, None);
        o.lr = 1e-9;
        o.init_from = Some(root.path().join("base"));
        train_var(&o, &device, |_| {}).unwrap();
        let config = read_config(&root.path().join("grown").join("checkpoint")).unwrap();
        assert_eq!((config.var.depth, config.var.embed_dim), (3, 32));
        // The new blocks are there, with their gates shut: the same logits for the same input.
        let grown = run_weights(&root.path().join("grown"));
        assert!(grown.iter().any(|(n, _)| n.starts_with("blocks.2.")));
        let logits = |run: &str| {
            let model = modeldir::load(
                &root.path().join(run).join("checkpoint"),
                &Device::flex(),
                &LoadOptions::default(),
            )
            .unwrap();
            let (len, cvae) = (model.config.seq_len(), model.config.vqvae.z_channels);
            let mut rng = Rng::new(5);
            let x: Vec<f32> = (0..2 * (len - 1) * cvae).map(|_| rng.normal()).collect();
            let device = model.device();
            let x = Tensor::<3>::from_data(TensorData::new(x, [2, len - 1, cvae]), &device);
            let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
            let out = model.var.forward(labels, x);
            pollster::block_on(crate::readback::read_f32(out)).unwrap()
        };
        let (before, after) = (logits("base"), logits("grown"));
        let worst = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "the grown model's logits differ by {worst}");
        // A shallower --depth is refused by name.
        o.out = root.path().join("cut");
        o.depth = Some(0);
        let err = train_var(&o, &device, |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("--depth 0") && err.contains("1 blocks"),
            "{err}"
        );
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
}
