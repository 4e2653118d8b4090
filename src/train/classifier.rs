//! The project's own Fashion-MNIST classifier: an independent judge of generated samples. It
//! scores class adherence (the share of samples assigned to the requested class) and supplies
//! the feature space of the Fréchet distance.
//!
//! A small CNN on 28x28 grey images: conv 3x3 (32) → ReLU → max-pool → conv 3x3 (64) → ReLU →
//! max-pool → linear 3136→128 (ReLU; the features) → linear 128→10.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, Relu};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::data::{FashionMnist, SIDE, Split};
use super::run::{
    OPTIMIZER_FILE, RunDir, batch_indices, check_loss, check_schedule, optimizer_error,
};
use super::schedule::cosine_to_zero;
use crate::error::{Result, VarError};
use crate::nn::export::{HasParamKeys, ParamKeys, export_module};
use crate::nn::{Loader, RandomSource};
use crate::weights::TensorSource;
use crate::weights::safetensors::{SafetensorsSource, safetensors_bytes};

pub const CLASSIFIER_FILE: &str = "classifier.safetensors";
/// Width of the feature vector (the Fréchet distance's space).
pub const FEATURES: usize = 128;
const CLASSES: usize = 10;

#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    /// The reference key of every parameter, for the exporter.
    #[module(skip)]
    keys: ParamKeys,
}

impl HasParamKeys for Classifier {
    fn param_keys(&self) -> &ParamKeys {
        &self.keys
    }
}

impl Classifier {
    pub fn load(w: &mut Loader) -> Result<Self> {
        let same = || PaddingConfig2d::Explicit(1, 1, 1, 1);
        Ok(Self {
            conv1: w.conv2d("conv1", 1, 32, 3, 1, same())?,
            conv2: w.conv2d("conv2", 32, 64, 3, 1, same())?,
            fc1: w.linear("fc1", 64 * 7 * 7, FEATURES, true)?,
            fc2: w.linear("fc2", FEATURES, CLASSES, true)?,
            keys: w.keys(),
        })
    }

    /// Loads `classifier.safetensors` from a directory (a checkpoint of `var train classifier`).
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let path = dir.join(CLASSIFIER_FILE);
        let bytes = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
        let mut src = SafetensorsSource::new(&bytes, CLASSIFIER_FILE)?;
        let mut w = Loader::new(&mut src, device);
        let c = Self::load(&mut w)?;
        w.finish()?;
        Ok(c)
    }

    /// `[B, 1, 28, 28]` in [-1, 1] → (features `[B, 128]`, logits `[B, 10]`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let pool = || MaxPoolOptions::new([2, 2]);
        let relu = Relu::new();
        let x = max_pool2d(relu.forward(self.conv1.forward(x)), pool());
        let x = max_pool2d(relu.forward(self.conv2.forward(x)), pool());
        let [b, c, h, w] = x.dims();
        let features = relu.forward(self.fc1.forward(x.reshape([b, c * h * w])));
        let logits = self.fc2.forward(features.clone());
        (features, logits)
    }

    /// Features and predicted classes of host images already prepared with [`grey_input`].
    pub fn classify(&self, x: Tensor<4>) -> Result<(Vec<f32>, Vec<usize>)> {
        let (features, logits) = self.forward(x);
        let f = features
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| VarError::Device(format!("{e:?}")))?;
        let pred = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| VarError::Device(format!("{e:?}")))?;
        Ok((f, pred.into_iter().map(|p| p as usize).collect()))
    }
}

/// Generated images `[B, 3, size, size]` in [0, 1] → the classifier's input: the channel mean,
/// the centre 28x28 (the models pad 28 → 32 by 2 pixels a side), scaled to [-1, 1].
pub fn grey_input(images01: &[f32], batch: usize, size: usize, device: &Device) -> Tensor<4> {
    let pad = size.saturating_sub(SIDE) / 2;
    let plane = size * size;
    let mut out = vec![-1f32; batch * SIDE * SIDE];
    for b in 0..batch {
        for y in 0..SIDE.min(size) {
            for x in 0..SIDE.min(size) {
                let at = (y + pad) * size + x + pad;
                let mean = (0..3)
                    .map(|c| images01[(b * 3 + c) * plane + at])
                    .sum::<f32>()
                    / 3.0;
                out[(b * SIDE + y) * SIDE + x] = mean * 2.0 - 1.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(out, [batch, 1, SIDE, SIDE]), device)
}

/// Dataset images as the classifier's input, `[B, 1, 28, 28]` in [-1, 1].
pub fn dataset_input(data: &FashionMnist, idx: &[usize], device: &Device) -> Tensor<4> {
    let px = SIDE * SIDE;
    let v: Vec<f32> = idx
        .iter()
        .flat_map(|&i| {
            data.images[i * px..(i + 1) * px]
                .iter()
                .map(|&b| b as f32 / 127.5 - 1.0)
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [idx.len(), 1, SIDE, SIDE]), device)
}

/// Features and predictions for dataset images `idx`, 500 at a time.
pub fn classify_dataset(
    c: &Classifier,
    data: &FashionMnist,
    idx: &[usize],
    device: &Device,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let (mut f, mut p) = (Vec::new(), Vec::new());
    for chunk in idx.chunks(500) {
        let (cf, cp) = c.classify(dataset_input(data, chunk, device))?;
        f.extend(cf);
        p.extend(cp);
    }
    Ok((f, p))
}

/// Test-set accuracy.
pub fn test_accuracy(c: &Classifier, test: &FashionMnist, device: &Device) -> Result<f64> {
    let idx: Vec<usize> = (0..test.len()).collect();
    let (_, pred) = classify_dataset(c, test, &idx, device)?;
    let hits = pred
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    Ok(hits as f64 / test.len() as f64)
}

/// What `var train classifier` does.
#[derive(Clone, Debug, clap::Args)]
pub struct ClassifierTraining {
    /// Run directory: `checkpoint/` (classifier.safetensors, optimizer.bpk, state.json) and
    /// `log.csv`.
    #[arg(long)]
    pub out: PathBuf,
    /// Folder with Fashion-MNIST's gzip IDX files.
    #[arg(long, default_value = super::data::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Train until this many optimizer steps in total (938 = one epoch at batch 64).
    #[arg(long, default_value_t = 2_800)]
    pub steps: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seconds between checkpoints (one is always written at the end).
    #[arg(long, default_value_t = 120)]
    pub checkpoint_secs: u64,
    #[arg(long)]
    pub resume: bool,
}

#[derive(Serialize, Deserialize)]
struct ClassifierState {
    step: usize,
    seed: u64,
    batch: usize,
}

/// One logged step; `test_accuracy` at checkpoints only.
pub struct ClassifierReport {
    pub step: usize,
    pub loss: f32,
    pub images_per_second: f64,
    pub test_accuracy: Option<f64>,
}

fn fresh(seed: u64, device: &Device) -> Result<Classifier> {
    let mut src = RandomSource::he(seed);
    let mut w = Loader::new(&mut src as &mut dyn TensorSource, device);
    Classifier::load(&mut w)
}

/// Trains (or resumes) the classifier with AdamW and a cosine-decayed learning rate.
pub fn train_classifier(
    opts: &ClassifierTraining,
    device: &Device,
    mut report: impl FnMut(&ClassifierReport),
) -> Result<()> {
    check_schedule(opts.batch, opts.steps, opts.lr)?;
    let train = FashionMnist::load(&opts.data, Split::Train)?;
    let test = FashionMnist::load(&opts.data, Split::Test)?;
    let plain = device.clone().inner();
    let run = RunDir::new(&opts.out);
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init();
    let (mut model, mut step) = if opts.resume {
        let state: ClassifierState = run.read_state()?;
        if state.batch != opts.batch || state.seed != opts.seed {
            return Err(VarError::InvalidArgument(format!(
                "the checkpoint was trained with --batch {} --seed {}; resume with the same values",
                state.batch, state.seed
            )));
        }
        let model = Classifier::load_dir(&run.checkpoint(), device)?;
        optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(
                run.read(OPTIMIZER_FILE)?,
            ))
            .map_err(|e| optimizer_error(&run, e))?;
        (model, state.step)
    } else {
        run.refuse_existing()?;
        (fresh(opts.seed, device)?, 0)
    };
    let mut log = run.log("step,loss,images_per_second,test_accuracy", step)?;
    let mut last_checkpoint = Instant::now();
    while step < opts.steps {
        let started = Instant::now();
        let idx = batch_indices(train.len(), opts.batch, step, opts.seed);
        let x = dataset_input(&train, &idx, device);
        let labels: Vec<i64> = idx.iter().map(|&i| train.labels[i] as i64).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(labels, [idx.len(), 1]), device);
        let (_, logits) = model.forward(x);
        let loss = log_softmax(logits, 1).gather(1, targets).mean().neg();
        let loss_value = loss.clone().into_scalar::<f32>();
        check_loss(loss_value, step)?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = cosine_to_zero(opts.lr, step, opts.steps);
        model = optim.step(lr, model, grads);
        step += 1;
        let mut rep = ClassifierReport {
            step,
            loss: loss_value,
            images_per_second: opts.batch as f64 / started.elapsed().as_secs_f64(),
            test_accuracy: None,
        };
        if step == opts.steps || last_checkpoint.elapsed().as_secs() >= opts.checkpoint_secs {
            rep.test_accuracy = Some(test_accuracy(&model.valid(), &test, &plain)?);
            let weights = safetensors_bytes(&export_module(&model)?)?;
            let optimizer = optim.into_bytes().map_err(|e| optimizer_error(&run, e))?;
            let state = ClassifierState {
                step,
                seed: opts.seed,
                batch: opts.batch,
            };
            run.save(&[(CLASSIFIER_FILE, &weights)], &optimizer, &state)?;
            last_checkpoint = Instant::now();
        }
        log.row(&format!(
            "{},{},{:.1},{}",
            rep.step,
            rep.loss,
            rep.images_per_second,
            rep.test_accuracy
                .map(|a| format!("{a:.4}"))
                .unwrap_or_default()
        ))?;
        report(&rep);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_input_crops_the_centre_and_averages_channels() {
        let size = 32;
        let mut img = vec![0f32; 3 * size * size];
        // Pixel (2, 2) of the 32 px image is (0, 0) of the 28 px crop.
        img[2 * size + 2] = 0.3;
        img[size * size + 2 * size + 2] = 0.6;
        img[2 * size * size + 2 * size + 2] = 0.9;
        let x = grey_input(&img, 1, size, &Device::flex());
        let v = x.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(v.len(), 28 * 28);
        assert!(
            (v[0] - 0.2).abs() < 1e-6,
            "mean 0.6 → 0.2 in [-1, 1], got {}",
            v[0]
        );
        assert_eq!(v[1], -1.0);
    }

    #[test]
    fn a_few_steps_lower_the_loss_on_a_tiny_batch() {
        let device = Device::flex().autodiff();
        let data = FashionMnist::load(Path::new(super::super::data::DEFAULT_DIR), Split::Test)
            .expect("Fashion-MNIST is not installed: run ./scripts/setup.sh");
        let idx: Vec<usize> = (0..16).collect();
        let labels: Vec<i64> = idx.iter().map(|&i| data.labels[i] as i64).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(labels, [16, 1]), &device);
        let x = dataset_input(&data, &idx, &device);
        let mut model = fresh(1, &device).unwrap();
        let mut optim = AdamWConfig::new().init();
        let loss_of = |m: &Classifier| {
            log_softmax(m.forward(x.clone()).1, 1)
                .gather(1, targets.clone())
                .mean()
                .neg()
        };
        let first = loss_of(&model).into_scalar::<f32>();
        for _ in 0..10 {
            let grads = GradientsParams::from_grads(loss_of(&model).backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        let last = loss_of(&model).into_scalar::<f32>();
        assert!(last < 0.5 * first, "loss {first} -> {last}");
    }
}
