//! One training step on wgpu (lavapipe here, any GPU elsewhere) gives the CPU's loss and
//! gradients: the same seeded model on both devices, the same batch, one plain SGD step of
//! learning rate 1, and every parameter compared (new weight = weight - gradient, so the
//! weights' difference is the gradients'). Covers the VQ-VAE's loss (convolutions, GroupNorm,
//! the multi-scale quantizer's straight-through estimator) and the transformer's (AdaLN,
//! attention, cross-entropy over teacher-forced token maps).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use var_web::config::ModelConfig;
use var_web::model::Model;
use var_web::nn::export::export_module;
use var_web::rng::Rng;
use var_web::train::var::token_loss;
use var_web::train::vqvae::vqvae_loss;

/// A small model whose every part is present: 16 px, three scales, two VQ-VAE levels.
fn config() -> ModelConfig {
    let mut c = ModelConfig::fashion_mnist()
        .at_resolution(16, Some(vec![1, 2, 4]))
        .unwrap();
    c.vqvae.vocab_size = 32;
    c.vqvae.z_channels = 8;
    c.var.depth = 2;
    c.var.embed_dim = 64;
    c.var.num_heads = 2;
    c
}

/// A fixed batch of four smooth random pictures in [-1, 1].
fn pictures(device: &Device) -> Tensor<4> {
    let mut rng = Rng::new(11);
    let v: Vec<f32> = (0..4 * 3 * 16 * 16)
        .map(|_| (rng.uniform() as f32) * 2.0 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(v, [4, 3, 16, 16]), device)
}

fn wgpu() -> Device {
    var_web::devices::wgpu()
        .expect("a Vulkan adapter (lavapipe: apt-get install mesa-vulkan-drivers)")
}

/// `(name, values)` of every parameter after one SGD step (lr 1) of the loss `step` builds.
fn stepped(device: &Device, transformer: bool) -> (f32, Vec<(String, Vec<f32>)>) {
    let device = device.clone().autodiff();
    let model = Model::random(config(), 3, &device).unwrap();
    let mut sgd = SgdConfig::new().init();
    let named = |t: Vec<var_web::weights::safetensors::NamedTensor>| {
        t.into_iter().map(|(n, _, v)| (n, v)).collect::<Vec<_>>()
    };
    if transformer {
        // Teacher forcing as the trainer does it: the frozen VQ-VAE's tokens of the batch.
        let vae = model.vqvae.valid();
        let (tokens, _) = vae.img_to_tokens(pictures(&device.clone().inner()));
        let x = vae.quantize.teacher_forcing_input(&tokens).autodiff();
        // The targets: each image's tokens of every scale, coarse to fine.
        let [b, _] = tokens[0].dims();
        let targets = Tensor::cat(tokens, 1)
            .autodiff()
            .reshape([b * config().seq_len()]);
        let labels =
            Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3, 9, 10], [4]), &device);
        let (loss, _) = token_loss(model.var.forward(labels, x), targets);
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model.var);
        let var = sgd.step(1.0, model.var, grads);
        (value, named(export_module(&var).unwrap()))
    } else {
        let loss = vqvae_loss(&model.vqvae, pictures(&device), 0.25, true);
        let value = loss.total.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.total.backward(), &model.vqvae);
        let vae = sgd.step(1.0, model.vqvae, grads);
        (value, named(export_module(&vae).unwrap()))
    }
}

/// Compares losses and every stepped parameter, returning the worst parameter difference.
fn compare(transformer: bool) {
    let (cpu_loss, cpu) = stepped(&Device::flex(), transformer);
    let (gpu_loss, gpu) = stepped(&wgpu(), transformer);
    assert!(
        (cpu_loss - gpu_loss).abs() <= 1e-4 * cpu_loss.abs().max(1.0),
        "loss: cpu {cpu_loss}, wgpu {gpu_loss}"
    );
    assert_eq!(cpu.len(), gpu.len());
    let mut worst = (0f32, String::new());
    for ((name, a), (name_b, b)) in cpu.iter().zip(&gpu) {
        assert_eq!(name, name_b);
        let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
        if d > worst.0 {
            worst = (d, name.clone());
        }
    }
    eprintln!(
        "loss cpu {cpu_loss} wgpu {gpu_loss}; largest gradient difference {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 < 1e-3,
        "{}: cpu and wgpu gradients differ by {} of the tensor's largest value",
        worst.1,
        worst.0
    );
}

#[test]
fn a_vqvae_training_step_on_wgpu_equals_the_cpus() {
    compare(false);
}

#[test]
fn a_transformer_training_step_on_wgpu_equals_the_cpus() {
    compare(true);
}

/// Every tensor of a safetensors file, by name.
fn tensors(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let src = var_web::weights::safetensors::SafetensorsSource::new(&bytes, "t").unwrap();
    let mut names = src.names();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let v = src.read_any(&n).unwrap().1;
            (n, v)
        })
        .collect()
}

#[test]
fn a_run_started_on_the_cpu_resumes_on_wgpu_and_back() {
    let root = tempfile::tempdir().unwrap();
    // A small folder, so the four runs spend their time training, not loading.
    let data = root.path().join("images");
    let data = data.to_str().unwrap();
    common::var_ok(&["export-fashion-mnist", "--out", data, "--per-class", "2"]);
    let train = |name: &str, device: &str, steps: &str, resume: bool| {
        let out = root.path().join(name);
        let out = out.to_str().unwrap();
        let mut args = vec![
            "train", "--device", device, "vqvae", "--data", data, "--out", out,
        ];
        args.extend([
            "--steps", steps, "--batch", "4", "--warmup", "1", "--seed", "2",
        ]);
        if resume {
            args.push("--resume");
        } else {
            args.extend(["--image-size", "16", "--patch-nums", "1,2,4"]);
        }
        common::var_ok(&args);
    };
    train("cpu", "cpu", "3", false);
    train("mixed", "cpu", "1", false);
    train("mixed", "wgpu", "2", true);
    train("mixed", "cpu", "3", true);
    let read = |name: &str| tensors(&root.path().join(name).join("checkpoint/vqvae.safetensors"));
    let (a, b) = (read("cpu"), read("mixed"));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let worst = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            worst < 1e-4,
            "{name} differs by {worst} after a step on wgpu"
        );
    }
}

#[test]
fn a_batch_split_over_the_cpu_and_wgpu_trains_as_on_one_device() {
    let root = tempfile::tempdir().unwrap();
    let path = |name: &str| root.path().join(name).to_str().unwrap().to_string();
    let data = path("images");
    common::var_ok(&["export-fashion-mnist", "--out", &data, "--per-class", "2"]);
    // A batch of 5 split 3 + 2: unequal shares are weighted by their size.
    for (name, devices) in [("one", "cpu"), ("split", "cpu,wgpu")] {
        let (vq, tr) = (path(&format!("{name}-vq")), path(&format!("{name}-tr")));
        let mut args = vec![
            "train", "--device", devices, "vqvae", "--data", &data, "--out", &vq,
        ];
        args.extend(["--steps", "2", "--batch", "5", "--warmup", "1"]);
        args.extend(["--image-size", "16", "--patch-nums", "1,2,4"]);
        common::var_ok(&args);
        // The transformer on the single-device run's VQ-VAE, so both see the same tokens.
        let frozen = format!("{}/checkpoint", path("one-vq"));
        let mut args = vec![
            "train", "--device", devices, "var", "--data", &data, "--out", &tr,
        ];
        args.extend([
            "--vqvae", &frozen, "--steps", "2", "--batch", "5", "--warmup", "1",
        ]);
        args.extend(["--depth", "1", "--width", "32", "--heads", "2"]);
        common::var_ok(&args);
    }
    for (file, a, b) in [
        ("vqvae.safetensors", "one-vq", "split-vq"),
        ("var.safetensors", "one-tr", "split-tr"),
    ] {
        let read = |run: &str| tensors(&root.path().join(run).join("checkpoint").join(file));
        for ((name, x), (_, y)) in read(a).iter().zip(&read(b)) {
            let worst = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                worst < 1e-4,
                "{file} {name}: one device and two differ by {worst}"
            );
        }
    }
}
