//! Training the multi-scale VQ-VAE (the reference ships no training code for it).
//!
//! This file holds the options, the loop and the checkpoint's PSNR; the loss (reconstruction
//! plus the multi-scale quantization loss) is in `loss`, `--grow-from` in `grow`, and the
//! learning-rate schedule is [`super::schedule::staged_warmup`].

mod grow;
mod loss;

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use self::loss::{VqvaeLoss, decoder_loss, quantize_with_loss, vqvae_loss};

use self::grow::grow_decoder;
use super::data::{DATA_FILE, DataOptions, DataRecord, ImageSet, TrainingData, fit_for};
use super::run::{
    OPTIMIZER_FILE, RunDir, batch_indices, check_loss, check_schedule, optimizer_error,
};
use super::schedule::{Decay, staged_warmup};
use crate::config::{Fit, ModelConfig};
use crate::error::{Result, VarError};
use crate::modeldir::{CONFIG_FILE, VQVAE_FILE};
use crate::nn::export::export_module;
use crate::nn::{Loader, RandomSource};
use crate::vqvae::VqVae;
use crate::weights::safetensors::{SafetensorsSource, safetensors_bytes};

/// What `var train vqvae` does (its command-line arguments, parsed by clap).
#[derive(Clone, Debug, clap::Args)]
pub struct VqvaeTraining {
    /// Run directory: `checkpoint/` (config.json, vqvae.safetensors, optimizer.bpk,
    /// state.json) and `log.csv`.
    #[arg(long)]
    pub out: PathBuf,
    /// The training images: a folder with Fashion-MNIST's gzip IDX files, or an image folder
    /// with one subfolder of PNG or JPEG files per class (class names from the subfolders).
    #[arg(long, default_value = super::data::DEFAULT_DIR)]
    pub data: PathBuf,
    /// The model to train (the VQ-VAE part); the Fashion-MNIST preset from the command line,
    /// at `--image-size` with `--patch-nums` when given.
    #[arg(skip = ModelConfig::fashion_mnist())]
    pub config: ModelConfig,
    /// Side of the model's images in pixels (default: the preset's 32). Without
    /// --patch-nums the VQ-VAE downsamples by 4 and the schedule is shaped like the official
    /// one (1,2,3,4,5,6,8,10,13,16 for 64 px).
    #[arg(long, conflicts_with_all = ["resume", "grow_from", "init_from"])]
    pub image_size: Option<usize>,
    /// The scale schedule, coarse to fine, e.g. 1,2,3,4,6,8: the last is the latent side, and
    /// --image-size over it (a power of two) gives the VQ-VAE's levels.
    #[arg(long, requires = "image_size", value_delimiter = ',')]
    pub patch_nums: Option<Vec<usize>>,
    /// How a picture of another size becomes the model's input: `crop` (its centred square,
    /// resized) or `pad:N` (resized to the side less N on every side, on black). Default:
    /// the model's recorded rule, else pad:2 for Fashion-MNIST at 32 px and crop for a folder.
    /// Recorded in config.json; editing fits its source the same way.
    #[arg(long)]
    pub fit: Option<Fit>,
    /// Share of each class of an image folder held out as the test split (seeded by --seed;
    /// every image's split is written to split.csv). Fashion-MNIST has its own test split.
    #[arg(long, default_value_t = 0.1)]
    pub test_share: f64,
    /// Train until this many optimizer steps in total (a resumed run continues the count).
    #[arg(long, default_value_t = 20_000)]
    pub steps: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    /// Commitment weight β of the quantization loss.
    #[arg(long, default_value_t = 0.25)]
    pub beta: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seconds between checkpoints (one is always written at the end).
    #[arg(long, default_value_t = 300)]
    pub checkpoint_secs: u64,
    /// Continue the run in `out` from its last checkpoint instead of starting afresh.
    #[arg(long)]
    pub resume: bool,
    /// Fine-tune only the decoder (with --resume, --init-from or --grow-from): the encoder,
    /// codebook and φ
    /// stay frozen, so the token maps, and a transformer trained on them, stay valid.
    #[arg(long)]
    pub decoder_only: bool,
    /// Start a new run from this trained checkpoint with a deeper decoder
    /// (`--decoder-res-blocks`): every tensor comes from the checkpoint, and each added block
    /// starts as the identity, so step 0 reconstructs exactly as the checkpoint does.
    #[arg(long, requires_all = ["decoder_res_blocks", "decoder_only"], conflicts_with = "resume")]
    pub grow_from: Option<PathBuf>,
    /// Start a new run from a trained VQ-VAE: a run's `checkpoint/` or a model directory (say
    /// the shipped `www/models/fashion-mnist`). Its weights and architecture, a fresh optimizer
    /// and step 0: for a new stage when the run that made it is not at hand.
    #[arg(long, conflicts_with_all = ["resume", "grow_from"])]
    pub init_from: Option<PathBuf>,
    /// ResnetBlocks per decoder level of the grown model (more than the checkpoint has).
    #[arg(long, requires = "grow_from")]
    pub decoder_res_blocks: Option<usize>,
    /// With --resume: begin a new stage at the checkpoint's step, with its own warm-up and
    /// decay (say a decoder-only polish after joint training, or a joint stage after a
    /// decoder-only one, whose encoder has no AdamW moments yet). The stage's first step is
    /// kept in the checkpoint, so resuming the stage later keeps its schedule.
    #[arg(long, requires = "resume")]
    pub new_stage: bool,
    /// Steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Learning-rate schedule after the warm-up: `constant`, or `cosine` down to zero at
    /// `--steps` (counted from the start of the stage: step 0, or see --new-stage).
    #[arg(long, default_value = "constant", value_parser = ["constant", "cosine"])]
    pub lr_decay: String,
    /// Reconstruction loss: `mse+l1` (the default: L1 keeps edges sharp early on) or `mse`
    /// (what PSNR measures; for the later stages, joint or decoder-only).
    #[arg(long, default_value = "mse+l1", value_parser = ["mse+l1", "mse"])]
    pub reconstruction: String,
}

/// One logged step.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub step: usize,
    pub loss: f32,
    pub reconstruction: f32,
    pub quantization: f32,
    pub images_per_second: f64,
    /// Reconstruction PSNR (dB) on the first 500 test images, at checkpoints only.
    pub test_psnr: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct TrainState {
    step: usize,
    seed: u64,
    batch: usize,
    /// The step the current schedule (warm-up and decay) started at; 0 in runs written
    /// before stages existed.
    #[serde(default)]
    stage_start: usize,
}

/// What the VQ-VAE trainer tells its caller.
pub enum VqvaeProgress<'a> {
    /// The data is loaded: one line on it (the full record is the run's `data.txt`).
    Data(&'a str),
    Step(&'a StepReport),
}

/// Reconstruction PSNR in dB (images in [0, 1]) of the first `count` test images.
pub fn test_psnr(vae: &VqVae, test: &ImageSet, count: usize) -> f64 {
    let vae = vae.valid();
    let device = vae.quantize.embedding.val().device();
    let (size, count) = (test.side(), count.min(test.len()));
    let mut sq = 0.0f64;
    let mut n = 0usize;
    for start in (0..count).step_by(100) {
        let idx: Vec<usize> = (start..(start + 100).min(count)).collect();
        let img = test.batch(&idx, &device);
        let (_, f_hat) = vae.img_to_tokens(img.clone());
        let err = (vae.fhat_to_img(f_hat) - img).powf_scalar(2.0).sum();
        sq += err.into_scalar::<f32>() as f64 / 4.0; // [-1, 1] → [0, 1]
        n += idx.len() * 3 * size * size;
    }
    10.0 * (n as f64 / sq).log10()
}

/// The learning rate of `step` (0-based) in a stage that began at `stage_start`: linear
/// warm-up, then constant or cosine to zero at `opts.steps` ([`staged_warmup`]).
fn learning_rate(opts: &VqvaeTraining, step: usize, stage_start: usize) -> f64 {
    let decay = if opts.lr_decay == "cosine" {
        Decay::Cosine
    } else {
        Decay::Constant
    };
    staged_warmup(opts.lr, step, stage_start, opts.warmup, opts.steps, decay)
}

/// The VQ-VAE in `dir` (a run's checkpoint or a model directory): its configuration, the
/// module, and the safetensors bytes it was read from (the transformer trainer keeps them).
pub(crate) fn load_trained(
    dir: &std::path::Path,
    device: &Device,
) -> Result<(ModelConfig, VqVae, Vec<u8>)> {
    let config = super::run::read_config(dir)?;
    let path = dir.join(VQVAE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
    let mut src = SafetensorsSource::new(&bytes, &path.display().to_string())?;
    let mut w = Loader::new(&mut src, device);
    let vae = VqVae::load(&mut w, &config.vqvae, &config.patch_nums)?;
    w.finish()?;
    Ok((config, vae, bytes))
}

/// Trains (or resumes training) the VQ-VAE on `device`, calling `report` after every step.
pub fn train_vqvae(
    opts: &VqvaeTraining,
    device: &Device,
    report: impl FnMut(VqvaeProgress),
) -> Result<()> {
    train_vqvae_on(opts, std::slice::from_ref(device), report)
}

/// [`train_vqvae`] with each batch split over `devices` (autodiff devices; the first holds
/// the model between steps): data parallelism through burn's `step_multi`
/// ([`super::parallel`]).
pub fn train_vqvae_on(
    opts: &VqvaeTraining,
    devices: &[Device],
    mut report: impl FnMut(VqvaeProgress),
) -> Result<()> {
    let device = devices
        .first()
        .ok_or_else(|| VarError::InvalidArgument("no training device".into()))?;
    check_schedule(opts.batch, opts.steps, opts.lr)?;
    if opts.decoder_only && !opts.resume && opts.grow_from.is_none() && opts.init_from.is_none() {
        return Err(VarError::InvalidArgument(
            "--decoder-only fine-tunes a trained VQ-VAE: pass --resume, --init-from or --grow-from"
                .into(),
        ));
    }
    let run = RunDir::new(&opts.out);
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let (config, mut vae, mut step, stage_start) = if opts.resume {
        let (config, vae, _) = load_trained(&run.checkpoint(), device)?;
        let state: TrainState = run.read_state()?;
        if state.batch != opts.batch || state.seed != opts.seed {
            return Err(VarError::InvalidArgument(format!(
                "the checkpoint was trained with --batch {} --seed {}; resume with the same values",
                state.batch, state.seed
            )));
        }
        let bytes = run.read(OPTIMIZER_FILE)?;
        optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| optimizer_error(&run, e))?;
        let stage_start = if opts.new_stage {
            state.step
        } else {
            state.stage_start
        };
        (config, vae, state.step, stage_start)
    } else if let (Some(from), Some(blocks)) = (&opts.grow_from, opts.decoder_res_blocks) {
        run.refuse_existing()?;
        let (config, vae) = grow_decoder(from, blocks, opts.seed, device)?;
        (config, vae, 0, 0)
    } else if let Some(from) = &opts.init_from {
        run.refuse_existing()?;
        let (config, vae, _) = load_trained(from, device)?;
        config.validate()?;
        (config, vae, 0, 0)
    } else {
        run.refuse_existing()?;
        let mut config = match opts.image_size {
            Some(size) => opts
                .config
                .clone()
                .at_resolution(size, opts.patch_nums.clone())?,
            None => opts.config.clone(),
        };
        // The preset's fit is Fashion-MNIST's; a new run takes its data's (`fit_for`).
        config.fit = None;
        config.validate()?;
        let mut src = RandomSource::new(opts.seed, 0.02);
        let mut w = Loader::new(&mut src, device);
        let vae = VqVae::load(&mut w, &config.vqvae, &config.patch_nums)?;
        (config, vae, 0, 0)
    };
    let (config, data) = load_data(opts, config, &run)?;
    let (train, test) = (&data.train, &data.test);
    let data_json = data.record.to_json();
    report(VqvaeProgress::Data(&data.headline(&run.out)));
    let mut log = run.log(
        "step,loss,reconstruction,quantization,images_per_second,test_psnr",
        step,
    )?;
    let mut last_checkpoint = Instant::now();
    while step < opts.steps {
        let started = Instant::now();
        let idx = batch_indices(train.len(), opts.batch, step, opts.seed);
        let lr = learning_rate(opts, step, stage_start);
        let with_l1 = opts.reconstruction == "mse+l1";
        let loss_of = |vae: &VqVae, img| {
            if opts.decoder_only {
                decoder_loss(vae, img, with_l1)
            } else {
                vqvae_loss(vae, img, opts.beta, with_l1)
            }
        };
        let (total, rec, vq);
        if let [device] = devices {
            let loss = loss_of(&vae, train.batch(&idx, device));
            (total, rec, vq) = (
                loss.total.clone().into_scalar::<f32>(),
                loss.reconstruction.into_scalar::<f32>(),
                loss.quantization.into_scalar::<f32>(),
            );
            check_loss(total, step)?;
            let grads = GradientsParams::from_grads(loss.total.backward(), &vae);
            vae = optim.step(lr, vae, grads);
        } else {
            let (grads, logged) =
                super::parallel::gradients(&vae, devices, idx.len(), |vae, share, device| {
                    let loss = loss_of(vae, train.batch(&idx[share], device));
                    let logged = vec![
                        loss.total.clone().into_scalar::<f32>(),
                        loss.reconstruction.into_scalar::<f32>(),
                        loss.quantization.into_scalar::<f32>(),
                    ];
                    Ok((loss.total, logged))
                })?;
            (total, rec, vq) = (logged[0], logged[1], logged[2]);
            check_loss(total, step)?;
            // step_multi leaves each parameter on the device that summed its gradients;
            // the model lives on the first device between steps.
            vae = optim.step_multi(lr, vae, grads).fork(device);
        }
        step += 1;
        let done = step == opts.steps;
        let checkpoint_now = done || last_checkpoint.elapsed().as_secs() >= opts.checkpoint_secs;
        let mut rep = StepReport {
            step,
            loss: total,
            reconstruction: rec,
            quantization: vq,
            images_per_second: opts.batch as f64 / started.elapsed().as_secs_f64(),
            test_psnr: None,
        };
        if checkpoint_now {
            rep.test_psnr = Some(test_psnr(&vae, test, 500));
            let weights = safetensors_bytes(&export_module(&vae)?)?;
            let optimizer = optim.into_bytes().map_err(|e| optimizer_error(&run, e))?;
            let state = TrainState {
                step,
                seed: opts.seed,
                batch: opts.batch,
                stage_start,
            };
            let config_json = config.to_json();
            run.save(
                &[
                    (CONFIG_FILE, config_json.as_bytes()),
                    (VQVAE_FILE, &weights),
                    (DATA_FILE, data_json.as_bytes()),
                ],
                &optimizer,
                &state,
            )?;
            last_checkpoint = Instant::now();
        }
        log.row(&format!(
            "{},{},{},{},{:.1},{}",
            rep.step,
            rep.loss,
            rep.reconstruction,
            rep.quantization,
            rep.images_per_second,
            rep.test_psnr.map(|p| format!("{p:.2}")).unwrap_or_default()
        ))?;
        report(VqvaeProgress::Step(&rep));
    }
    Ok(())
}

/// The run's data, fitted to `config` (which learns the data's fit and classes), checked
/// against what a resumed run was trained on, and recorded in the run directory.
fn load_data(
    opts: &VqvaeTraining,
    mut config: ModelConfig,
    run: &RunDir,
) -> Result<(ModelConfig, TrainingData)> {
    let fit = fit_for(&opts.data, opts.fit, config.fit, config.image_size);
    let data = TrainingData::load(
        &opts.data,
        &DataOptions {
            image_size: config.image_size,
            fit,
            split_seed: opts.seed,
            test_share: opts.test_share,
        },
    )?;
    if opts.resume
        && let Some(saved) = DataRecord::read(&run.checkpoint())?
    {
        data.record.check_resumes(&saved)?;
    }
    config.fit = Some(fit);
    // A new model of a folder is named after it, not after the preset it started from.
    if data.record.source == "folder"
        && config.name == ModelConfig::fashion_mnist().name
        && let Some(folder) = opts.data.file_name()
    {
        config.name = folder.to_string_lossy().into_owned();
    }
    config.class_names = data.record.classes.clone();
    config.var.num_classes = config.class_names.len();
    config.validate()?;
    std::fs::create_dir_all(&run.out).map_err(|e| VarError::io(&run.out, e))?;
    data.write_records(&run.out)?;
    Ok((config, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::run::CHECKPOINT;

    /// Options for a 2-step run of a small 32 px model writing to `out` (the preset's scales
    /// shortened), for tests to adjust with struct update syntax.
    fn tiny_training(out: PathBuf) -> VqvaeTraining {
        let mut config = crate::train::tiny_config();
        config.image_size = 32;
        config.patch_nums = vec![1, 2, 4, 8, 16];
        VqvaeTraining {
            out,
            data: PathBuf::from(crate::train::data::DEFAULT_DIR),
            config,
            image_size: None,
            patch_nums: None,
            fit: None,
            test_share: 0.1,
            steps: 2,
            batch: 4,
            lr: 1e-3,
            beta: 0.25,
            seed: 4,
            checkpoint_secs: 3600,
            resume: false,
            decoder_only: false,
            grow_from: None,
            init_from: None,
            decoder_res_blocks: None,
            new_stage: false,
            warmup: 1,
            lr_decay: "constant".into(),
            reconstruction: "mse".into(),
        }
    }

    #[test]
    fn resumed_training_equals_uninterrupted_training() {
        let root = tempfile::tempdir().unwrap();
        let opts = |name: &str, steps: usize, resume: bool| VqvaeTraining {
            steps,
            seed: 1,
            resume,
            warmup: 500,
            reconstruction: "mse+l1".into(),
            ..tiny_training(root.path().join(name))
        };
        let device = Device::flex().autodiff();
        let mut psnr = None;
        train_vqvae(&opts("straight", 4, false), &device, |p| {
            if let VqvaeProgress::Step(r) = p {
                psnr = r.test_psnr;
            }
        })
        .unwrap();
        assert!(psnr.is_some_and(|p| p.is_finite() && p > 0.0), "{psnr:?}");
        train_vqvae(&opts("resumed", 2, false), &device, |_| {}).unwrap();
        let again = train_vqvae(&opts("resumed", 2, false), &device, |_| {});
        assert!(again.unwrap_err().to_string().contains("--resume"));
        train_vqvae(&opts("resumed", 4, true), &device, |_| {}).unwrap();

        let read = |name: &str| {
            crate::train::tensors_of(&root.path().join(name).join(CHECKPOINT).join(VQVAE_FILE))
        };
        let worst = crate::train::largest_difference(&read("straight"), &read("resumed"));
        assert!(worst < 1e-5, "the weights differ by {worst} after resuming");
        let log = std::fs::read_to_string(root.path().join("resumed/log.csv")).unwrap();
        assert_eq!(log.lines().count(), 1 + 4, "{log}");
    }

    #[test]
    fn a_run_can_start_from_a_trained_vqvae() {
        let root = tempfile::tempdir().unwrap();
        let opts = |name: &str, lr: f64, init_from: Option<PathBuf>| VqvaeTraining {
            lr,
            init_from,
            ..tiny_training(root.path().join(name))
        };
        let device = Device::flex().autodiff();
        train_vqvae(&opts("base", 1e-3, None), &device, |_| {}).unwrap();
        let base_dir = root.path().join("base").join(CHECKPOINT);
        // Two steps at a negligible learning rate: the new run keeps its starting point.
        train_vqvae(&opts("warm", 1e-9, Some(base_dir.clone())), &device, |_| {}).unwrap();
        train_vqvae(&opts("fresh", 1e-9, None), &device, |_| {}).unwrap();
        let read = |name: &str| {
            crate::train::tensors_of(&root.path().join(name).join(CHECKPOINT).join(VQVAE_FILE))
        };
        let base = read("base");
        assert!(crate::train::largest_difference(&base, &read("warm")) < 1e-5);
        assert!(crate::train::largest_difference(&base, &read("fresh")) > 1e-3);

        // A directory without a VQ-VAE is refused, naming the file it lacks.
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let config = tiny_training(empty.clone()).config;
        std::fs::write(empty.join(CONFIG_FILE), config.to_json()).unwrap();
        let err = train_vqvae(&opts("none", 1e-3, Some(empty)), &device, |_| {}).unwrap_err();
        assert!(err.to_string().contains(VQVAE_FILE), "{err}");
    }

    #[test]
    fn a_new_stage_gets_its_own_warm_up_and_cosine_decay() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            opts: VqvaeTraining,
        }
        use clap::Parser;
        use std::f64::consts::PI;
        let args = [
            "vqvae",
            "--out",
            "x",
            "--steps",
            "1000",
            "--lr",
            "1e-3",
            "--warmup",
            "100",
            "--lr-decay",
            "cosine",
        ];
        let opts = Cli::parse_from(args).opts;
        // A run from step 0: the first step is warm, the peak is at the end of the warm-up.
        assert!((learning_rate(&opts, 0, 0) - 1e-5).abs() < 1e-12);
        assert!(
            (learning_rate(&opts, 99, 0) - 1e-3 * 0.5 * (1.0 + (PI * 0.099).cos())).abs() < 1e-12
        );
        // A stage that began at step 600 warms up again from there and reaches zero at
        // --steps, not at a point computed from step 0.
        assert!((learning_rate(&opts, 600, 600) - 1e-5).abs() < 1e-12);
        let mid = learning_rate(&opts, 800, 600);
        assert!((mid - 1e-3 * 0.5).abs() < 1e-12, "{mid}");
        assert!(learning_rate(&opts, 999, 600) < 1e-7);
        assert!(learning_rate(&opts, 800, 0) < 0.2 * mid);
    }
}
