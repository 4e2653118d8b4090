//! The `var` command line: convert, verify, generate, serve, bench.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use var_web::bench::{BenchReport, BenchSettings, GpuMemory};
use var_web::config::SamplingParams;
use var_web::config::{ModelConfig, OFFICIAL_PATCH_NUMS, Storage, parse_patch_nums};
use var_web::convert::{ConvertOptions, convert_pth};
use var_web::edit::{describe_mask, inpaint, keep_grid};
use var_web::error::{Result, VarError};
use var_web::files::write_atomically;
use var_web::generate::generate;
use var_web::model::Model;
use var_web::modeldir::{self, LoadOptions};
use var_web::nn::export::export_module;
use var_web::picture::{overlay_mask, read_mask, read_picture, side_by_side, write_png};
use var_web::readback::read_f32;
use var_web::verify::{GoldenMeta, verify};
use var_web::weights::pth::write::write_state_dict;

#[derive(Parser)]
#[command(
    name = "var",
    version,
    about = "VAR: next-scale prediction image generation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the training variant (it carries a ModelConfig) does
// not matter, and boxing it would lose clap's derive.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Convert official PyTorch checkpoints (vae_*.pth + var_d*.pth) into a model directory.
    Convert {
        /// The VQ-VAE checkpoint, e.g. vae_ch160v4096z32.pth.
        #[arg(long)]
        vae: PathBuf,
        /// The transformer checkpoint, e.g. var_d16.pth.
        #[arg(long)]
        var: PathBuf,
        /// Side of each scale's token map, coarse to fine (checked against pos_1LC).
        #[arg(long, default_value = "1,2,3,4,5,6,8,10,13,16")]
        patch_nums: String,
        /// Output model directory (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Storage precision: f32, f16, or int8 (transformer matrices per output channel,
        /// f16 elsewhere).
        #[arg(long, default_value = "f32")]
        quantize: String,
        /// Largest shard in MiB: the directory holds manifest.json and shards the page
        /// downloads, checks and caches one by one. 0 writes the two files unsharded.
        #[arg(long, default_value_t = 64)]
        shard_mib: usize,
    },
    /// Rewrite an f32 model directory at another precision (int8 transformer weights, f16
    /// elsewhere; or f16 throughout).
    Quantize {
        /// The f32 model directory.
        #[arg(long, default_value = var_web::DEFAULT_MODEL_DIR)]
        model: PathBuf,
        /// int8 | f16 | f32.
        #[arg(long, default_value = "int8")]
        precision: String,
        /// int8 scale group: this many input columns share a scale (0 = one per output channel).
        #[arg(long, default_value_t = 0)]
        group: usize,
        /// Output model directory (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Compare a quantized model with its f32 original: teacher-forced logits (KL, top-1)
    /// and greedy generation agreement.
    Agreement {
        /// The f32 original.
        #[arg(long)]
        original: PathBuf,
        /// The quantized copy.
        #[arg(long)]
        model: PathBuf,
        /// Sequences compared (classes in turn).
        #[arg(long, default_value_t = 100)]
        sequences: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run the reference parity checks of a golden fixture against a model directory.
    Verify {
        #[arg(long)]
        model: PathBuf,
        /// Golden tensors (golden_*.safetensors).
        #[arg(long)]
        golden: PathBuf,
        /// Golden metadata (golden_*.json).
        #[arg(long)]
        meta: PathBuf,
    },
    /// Generate images of one class and write them as PNG files.
    Generate(GenerateArgs),
    /// In-paint, out-paint or edit an image: regenerate the masked part, scale by scale, keeping
    /// the source's tokens elsewhere.
    Inpaint(InpaintArgs),
    /// Train a model on Fashion-MNIST (resumable; see the README's training section).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Score a Fashion-MNIST model: reconstruction PSNR, class adherence and Fréchet distance
    /// under the project's classifier, and a sample grid.
    Eval(var_web::train::eval::Evaluation),
    /// Plot columns of a training log (log.csv) against the step as a PNG.
    Plot {
        #[arg(long)]
        log: PathBuf,
        /// Comma-separated column names, e.g. loss,val_loss or test_psnr.
        #[arg(long)]
        columns: String,
        #[arg(long, default_value = "training")]
        title: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Assemble a model directory (what the page loads) from a `var train var` run.
    Package(var_web::train::var::Packaging),
    /// Serve the web page (www/) on 127.0.0.1 and print its URL.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Directory to serve (the page and its wasm package).
        #[arg(long, default_value = "www")]
        root: PathBuf,
    },
    /// Write random weights under the official key names and shapes as PyTorch checkpoints
    /// (`vae_ch160v4096z32.pth`, `var_d{depth}.pth`): the converter and the page at official
    /// scale without the official files.
    RandomCheckpoint {
        /// Transformer depth of the official preset (16, 20, 24, 30).
        #[arg(long, default_value_t = 16)]
        depth: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory (created if missing; existing checkpoints are replaced).
        #[arg(long)]
        out: PathBuf,
    },
    /// Time generation per scale, f32 against int8 and CPU against GPU side by side, with
    /// FLOPs, GFLOP/s and memory: the official d16 + 256 px VQ-VAE shapes with random weights,
    /// or a model directory.
    Bench {
        /// A model directory; without it, the official preset of `--depth` with random weights.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Transformer depth of the official preset (16, 20, 24, 30).
        #[arg(long, default_value_t = 16)]
        depth: usize,
        /// Backends to compare, comma-separated: cpu (burn-flex), wgpu (the GPU through wgpu,
        /// Vulkan on Linux; our WGSL kernels run there).
        #[arg(long, value_delimiter = ',', default_value = "cpu")]
        backend: Vec<BenchBackend>,
        /// Storage precisions to compare, comma-separated: f32, f16, int8 (int8 weights stay
        /// int8 on wgpu; the CPU dequantizes them at load).
        #[arg(long, value_delimiter = ',', default_value = "f32")]
        precision: Vec<Storage>,
        /// Timed runs after one warm-up run; medians are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Top-k of the timed runs (the reference's FID setting samples from 900).
        #[arg(long, default_value_t = 900)]
        top_k: usize,
        /// Leave the final VQ-VAE decode out.
        #[arg(long)]
        no_decode: bool,
        /// Time the transformer's Linear layers alone instead, f32 (burn's matmul) against
        /// int8 (our kernel), at every scale's shape: where the int8 path wins and loses. On
        /// the CPU our packed CPU kernels (f32 and int8) are timed beside them.
        #[arg(long)]
        kernels: bool,
        /// Also write the reports as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Train the multi-scale VQ-VAE of the Fashion-MNIST preset.
    Vqvae(Box<var_web::train::vqvae::VqvaeTraining>),
    /// Train the transformer on the token maps of a trained VQ-VAE.
    Var(var_web::train::var::VarTraining),
    /// Train the project's Fashion-MNIST classifier (the judge of `var eval`).
    Classifier(var_web::train::classifier::ClassifierTraining),
}

/// Sampling settings shared by `generate` and `inpaint`; unset ones take the model's
/// recommendation (its config.json).
#[derive(Args)]
struct SamplingArgs {
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Classifier-free guidance.
    #[arg(long)]
    cfg: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Gumbel-softmax code blending (the reference's more_smooth).
    #[arg(long)]
    smooth: bool,
}

impl SamplingArgs {
    fn params(&self, model: &Model) -> Result<SamplingParams> {
        let d = &model.config.sampling;
        let params = SamplingParams {
            cfg: self.cfg.unwrap_or(d.cfg),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            temperature: self.temperature,
            more_smooth: self.smooth || d.more_smooth,
            seed: self.seed,
        };
        params.validate()?;
        Ok(params)
    }
}

#[derive(Args)]
struct GenerateArgs {
    /// Model directory (config.json + safetensors); default: the shipped Fashion-MNIST model.
    #[arg(long, default_value = var_web::DEFAULT_MODEL_DIR)]
    model: PathBuf,
    /// Class index (see the model's config.json for names).
    #[arg(long)]
    class: usize,
    /// Images to generate (seeds seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Output directory; one PNG per image.
    #[arg(long)]
    out: PathBuf,
}

/// `var inpaint`: regenerate the white part of a mask over an image.
#[derive(Args)]
struct InpaintArgs {
    /// Model directory; default: the shipped Fashion-MNIST model.
    #[arg(long, default_value = var_web::DEFAULT_MODEL_DIR)]
    model: PathBuf,
    /// The source picture (PNG or JPEG, any size: its centred square is resized to the
    /// model's resolution).
    #[arg(long)]
    image: PathBuf,
    /// The mask, as large as the image: white = generate, black = keep.
    #[arg(long)]
    mask: PathBuf,
    /// Out-painting: white = keep, black = generate.
    #[arg(long)]
    invert: bool,
    /// Generate under this class (class-conditional editing); default: the null class.
    #[arg(long)]
    class: Option<usize>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The edited image (PNG, at the model's resolution).
    #[arg(long)]
    out: PathBuf,
    /// Also write source | mask | reconstruction | result side by side to this PNG.
    #[arg(long)]
    sheet: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal: a
/// training run in the background still logs its checkpoints).
fn say(pb: &ProgressBar, line: String) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

fn scale_bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} scales {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn run(command: Command) -> Result<ExitCode> {
    let device = Device::flex();
    match command {
        Command::Convert {
            vae,
            var,
            patch_nums,
            out,
            quantize,
            shard_mib,
        } => {
            let patch_nums = parse_patch_nums(&patch_nums)?;
            let storage = quantize.parse()?;
            let shards = (shard_mib > 0).then_some(shard_mib << 20);
            let pb = spinner("converting");
            let options = ConvertOptions {
                storage,
                shard_bytes: shards,
            };
            let cfg = convert_pth(&vae, &var, &patch_nums, &out, &options, |m| {
                pb.set_message(m.to_string())
            });
            pb.finish_and_clear();
            let cfg = cfg?;
            println!(
                "wrote {} (VAR-d{}, {} classes, {} scales, {} px)",
                out.display(),
                cfg.var.depth,
                cfg.var.num_classes,
                cfg.patch_nums.len(),
                cfg.image_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            model,
            golden,
            meta,
        } => {
            let mut model = modeldir::load(&model, &device, &LoadOptions::default())?;
            model.use_cpu_kernels();
            let meta_text = std::fs::read_to_string(&meta).map_err(|e| VarError::io(&meta, e))?;
            let meta: GoldenMeta =
                serde_json::from_str(&meta_text).map_err(|e| VarError::Json {
                    path: meta.display().to_string(),
                    message: e.to_string(),
                })?;
            let bytes = std::fs::read(&golden).map_err(|e| VarError::io(&golden, e))?;
            let pb = spinner("running the parity checks");
            let checks = pollster::block_on(verify(&model, &bytes, &meta));
            pb.finish_and_clear();
            let checks = checks?;
            for c in &checks {
                println!("{c}");
            }
            Ok(if checks.iter().all(|c| c.passed()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Quantize {
            model,
            precision,
            group,
            out,
        } => {
            let storage = precision.parse()?;
            let before = dir_bytes(&model)?;
            let c = var_web::convert::quantize_dir(&model, storage, group, &out)?;
            let after = dir_bytes(&out)?;
            println!(
                "wrote {} ({:?}): {after} bytes, {:.3}x the {before} bytes of {}",
                out.display(),
                c.storage,
                after as f64 / before as f64,
                model.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Agreement {
            original,
            model,
            sequences,
            seed,
        } => {
            let a = modeldir::load(&original, &device, &LoadOptions::default())?;
            let b = modeldir::load(&model, &device, &LoadOptions::default())?;
            let pb = spinner("comparing");
            let r = pollster::block_on(var_web::agreement::compare(&a, &b, sequences, seed));
            pb.finish_and_clear();
            let r = r?;
            println!("sequences: {}", r.sequences);
            println!(
                "teacher-forced KL(original || quantized): {:.5} nats per token",
                r.kl
            );
            println!("teacher-forced top-1 agreement: {:.2}%", r.top1 * 100.0);
            println!(
                "greedy generation, tokens agreeing: {:.2}%",
                r.greedy_tokens * 100.0
            );
            println!(
                "greedy generation, identical images: {} of {}",
                r.greedy_identical, r.sequences
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => generate_cmd(args, &device),
        Command::Inpaint(args) => inpaint_cmd(args, &device),
        Command::Train(TrainCommand::Vqvae(opts)) => {
            let pb = ProgressBar::new(opts.steps as u64);
            pb.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps {elapsed}<{eta} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            var_web::train::vqvae::train_vqvae(&opts, &device.clone().autodiff(), |r| {
                pb.set_position(r.step as u64);
                let psnr = r
                    .test_psnr
                    .map(|p| format!(" test PSNR {p:.2} dB"))
                    .unwrap_or_default();
                pb.set_message(format!(
                    "loss {:.4} (rec {:.4}, vq {:.4}) {:.0} img/s{psnr}",
                    r.loss, r.reconstruction, r.quantization, r.images_per_second
                ));
                if r.test_psnr.is_some() {
                    say(&pb, format!("step {}: checkpoint written;{psnr}", r.step));
                }
            })?;
            pb.finish();
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(TrainCommand::Var(opts)) => {
            use var_web::train::var::{VarProgress, train_var};
            let pb = ProgressBar::new(opts.steps as u64);
            pb.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed}<{eta} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            train_var(&opts, &device.clone().autodiff(), |p| match p {
                VarProgress::Tokenizing { done, total } => {
                    pb.set_message(format!("tokenizing the training set: {done}/{total}"));
                }
                VarProgress::Step(r) => {
                    pb.set_position(r.step as u64);
                    pb.set_message(format!(
                        "loss {:.4} acc {:.3} lr {:.1e} {:.1} seq/s",
                        r.loss, r.accuracy, r.lr, r.sequences_per_second
                    ));
                    if let Some((l, a)) = r.validation {
                        say(
                            &pb,
                            format!(
                                "step {}: checkpoint written; validation loss {l:.4}, accuracy {a:.3}",
                                r.step
                            ),
                        );
                    }
                }
            })?;
            pb.finish();
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(TrainCommand::Classifier(opts)) => {
            let pb = ProgressBar::new(opts.steps as u64);
            pb.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps {elapsed}<{eta} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            var_web::train::classifier::train_classifier(&opts, &device.clone().autodiff(), |r| {
                pb.set_position(r.step as u64);
                pb.set_message(format!(
                    "loss {:.4} {:.0} img/s",
                    r.loss, r.images_per_second
                ));
                if let Some(a) = r.test_accuracy {
                    say(
                        &pb,
                        format!(
                            "step {}: checkpoint written; test accuracy {:.2}%",
                            r.step,
                            a * 100.0
                        ),
                    );
                }
            })?;
            pb.finish();
            Ok(ExitCode::SUCCESS)
        }
        Command::Plot {
            log,
            columns,
            title,
            out,
        } => {
            let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
            var_web::train::plot::loss_curve(&log, &out, &title, &columns)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Package(opts) => {
            let c = var_web::train::var::package(&opts)?;
            println!(
                "wrote {} (depth {}, {} classes, cfg {}, top-k {}, top-p {})",
                opts.out.display(),
                c.var.depth,
                c.var.num_classes,
                c.sampling.cfg,
                c.sampling.top_k,
                c.sampling.top_p
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(opts) => {
            let pb = spinner("evaluating");
            let report =
                var_web::train::eval::evaluate(&opts, &device, |m| pb.set_message(m.to_string()));
            pb.finish_and_clear();
            let r = report?;
            println!(
                "reconstruction PSNR: {:.2} dB ({} test images)",
                r.psnr_db, r.psnr_images
            );
            println!(
                "classifier test accuracy: {:.2}%",
                r.classifier_test_accuracy * 100.0
            );
            println!(
                "samples: {} per class, cfg {}, top-k {}, top-p {}",
                r.samples_per_class, r.sampling.cfg, r.sampling.top_k, r.sampling.top_p
            );
            println!(
                "class adherence (samples classified as the requested class; the classifier on real test images beside it):"
            );
            for ((name, a), real) in var_web::FASHION_MNIST_CLASSES
                .iter()
                .zip(&r.class_accuracy)
                .zip(&r.classifier_class_accuracy)
            {
                println!("  {name:<12} {:6.1}%   ({:5.1}%)", a * 100.0, real * 100.0);
            }
            println!(
                "  {:<12} {:6.1}%",
                "overall",
                r.class_accuracy_overall * 100.0
            );
            println!(
                "Fréchet distance (classifier features): {:.3}, floor (train vs test) {:.3}",
                r.frechet, r.frechet_floor
            );
            println!(
                "within-class spread, generated / real: {:.2}",
                r.within_class_spread_ratio
            );
            println!("wrote {}/eval.json and grid.png", opts.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { port, root } => {
            var_web::serve::serve(&root, port, |url| {
                println!("serving {} at {url}", root.display());
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RandomCheckpoint { depth, seed, out } => {
            if ![16, 20, 24, 30].contains(&depth) {
                return Err(VarError::InvalidArgument(format!(
                    "there is no official VAR-d{depth}: the depths are 16, 20, 24 and 30"
                )));
            }
            std::fs::create_dir_all(&out).map_err(|e| VarError::io(&out, e))?;
            let pb = spinner(&format!("building random VAR-d{depth} + VQ-VAE"));
            let model = Model::random(ModelConfig::official(depth), seed, &device)?;
            let vae = out.join("vae_ch160v4096z32.pth");
            let var = out.join(format!("var_d{depth}.pth"));
            pb.set_message(format!("writing {}", vae.display()));
            write_state_dict(&vae, &export_module(&model.vqvae))?;
            pb.set_message(format!("writing {}", var.display()));
            write_state_dict(&var, &export_module(&model.var))?;
            pb.finish_and_clear();
            println!("wrote {} and {}", vae.display(), var.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            model,
            depth,
            backend,
            precision,
            runs,
            top_k,
            no_decode,
            kernels,
            json,
        } => {
            if kernels {
                return bench_kernels(model, depth, &backend, runs, json);
            }
            let settings = BenchSettings::reference(runs, top_k, !no_decode);
            bench(model, depth, &backend, &precision, &settings, json)
        }
    }
}

fn generate_cmd(a: GenerateArgs, device: &Device) -> Result<ExitCode> {
    let mut model = modeldir::load(&a.model, device, &LoadOptions::default())?;
    model.use_cpu_kernels();
    let params = a.sampling.params(&model)?;
    if a.class >= model.config.var.num_classes {
        return Err(VarError::InvalidArgument(format!(
            "class {} does not exist: this model has classes 0..{}",
            a.class,
            model.config.var.num_classes - 1
        )));
    }
    if a.count == 0 {
        return Err(VarError::InvalidArgument(
            "--count must be at least 1".into(),
        ));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| VarError::io(&a.out, e))?;
    let size = model.config.image_size;
    let k = model.config.num_scales();
    for i in 0..a.count {
        let seed = params.seed.wrapping_add(i as u64);
        let pb = scale_bar(k, &format!("image {}/{} (seed {seed})", i + 1, a.count));
        let p = SamplingParams {
            seed,
            ..params.clone()
        };
        let img = pollster::block_on(generate(&model, &[a.class], &p, None, |_| {
            pb.inc(1);
            ControlFlow::Continue(())
        }))?;
        pb.finish_and_clear();
        let pixels = pollster::block_on(read_f32(img))?;
        let rgb = Model::to_rgb8(&pixels, 1, size).remove(0);
        let path = a.out.join(format!("class{}_seed{seed}.png", a.class));
        write_png(&path, &rgb, size, size)?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn inpaint_cmd(a: InpaintArgs, device: &Device) -> Result<ExitCode> {
    let mut model = modeldir::load(&a.model, device, &LoadOptions::default())?;
    model.use_cpu_kernels();
    let params = a.sampling.params(&model)?;
    let num_classes = model.config.var.num_classes;
    if let Some(c) = a.class.filter(|&c| c >= num_classes) {
        return Err(VarError::InvalidArgument(format!(
            "class {c} does not exist: this model has classes 0..{}",
            num_classes - 1
        )));
    }
    let size = model.config.image_size;
    let side = *model.config.patch_nums.last().expect("validated");
    let picture = read_picture(&a.image, size)?;
    let mut generate_px = read_mask(&a.mask, size, picture.original)?;
    if a.invert {
        generate_px.iter_mut().for_each(|g| *g = !*g);
    }
    eprintln!("{}: {}", a.image.display(), picture.describe(size));
    eprintln!(
        "mask: {}",
        describe_mask(&keep_grid(&generate_px, size, side)?)?
    );
    let label = a.class.unwrap_or(num_classes);
    let pb = scale_bar(model.config.num_scales(), "in-painting");
    let done = pollster::block_on(inpaint(
        &model,
        &picture.rgb,
        &generate_px,
        label,
        &params,
        |_| {
            pb.inc(1);
            ControlFlow::Continue(())
        },
    ))?;
    pb.finish_and_clear();
    let result = Model::to_rgb8(&pollster::block_on(read_f32(done.image))?, 1, size).remove(0);
    write_png(&a.out, &result, size, size)?;
    println!("{}", a.out.display());
    if let Some(sheet) = &a.sheet {
        let recon = pollster::block_on(read_f32(done.source.reconstruction(&model)))?;
        let panels = [
            picture.rgb.clone(),
            overlay_mask(&picture.rgb, &generate_px),
            Model::to_rgb8(&recon, 1, size).remove(0),
            result,
        ];
        write_atomically(sheet, &side_by_side(&panels, size)?)?;
        println!("{}", sheet.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Total size of a model directory's three files.
fn dir_bytes(dir: &std::path::Path) -> Result<u64> {
    use var_web::modeldir::{CONFIG_FILE, VAR_FILE, VQVAE_FILE};
    [CONFIG_FILE, VQVAE_FILE, VAR_FILE]
        .iter()
        .map(|f| {
            let p = dir.join(f);
            std::fs::metadata(&p)
                .map(|m| m.len())
                .map_err(|e| VarError::io(&p, e))
        })
        .sum()
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets this process's peak resident memory (`VmHWM`), so each configuration of a
/// side-by-side benchmark reports its own peak (Linux ≥ 4.0; elsewhere peaks accumulate).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchBackend {
    Cpu,
    Wgpu,
}

impl BenchBackend {
    fn device(self) -> Result<Device> {
        match self {
            BenchBackend::Cpu => Ok(Device::flex()),
            BenchBackend::Wgpu => {
                static WGPU: std::sync::OnceLock<std::result::Result<Device, String>> =
                    std::sync::OnceLock::new();
                WGPU.get_or_init(|| {
                    let options = Device::wgpu_options();
                    // burn's WGSL path on Linux is Vulkan (its SPIR-V compiler rejects our
                    // WGSL templates; docs/burn-custom-kernels.md).
                    #[cfg(target_os = "linux")]
                    let options = options.graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan);
                    options.init().map_err(|e| e.to_string())
                })
                .clone()
                .map_err(|e| {
                    VarError::InvalidArgument(format!(
                        "no wgpu device: {e} (on Linux without a GPU, install mesa-vulkan-drivers for lavapipe)"
                    ))
                })
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            BenchBackend::Cpu => "burn-flex CPU",
            BenchBackend::Wgpu => "wgpu",
        }
    }
}

fn bench(
    model_dir: Option<PathBuf>,
    depth: usize,
    backends: &[BenchBackend],
    precisions: &[Storage],
    settings: &BenchSettings,
    json: Option<PathBuf>,
) -> Result<ExitCode> {
    let mut reports = Vec::new();
    let mut peaks = Vec::new();
    for &backend in backends {
        let device = backend.device()?;
        for &storage in precisions {
            reset_peak_rss();
            let what = format!(
                "{} {storage:?} on {}",
                model_label(&model_dir, depth),
                backend.label()
            );
            let pb = spinner(&format!("loading {what}"));
            let model = match &model_dir {
                Some(dir) => modeldir::load(
                    dir,
                    &device,
                    &LoadOptions {
                        read_as: Some(storage),
                    },
                ),
                None => {
                    let mut config = ModelConfig::official(depth);
                    config.patch_nums = OFFICIAL_PATCH_NUMS.to_vec();
                    config.name = format!("VAR-d{depth} (random)");
                    Model::random_stored(config, 0, storage, &device)
                }
            };
            pb.finish_and_clear();
            let mut model = model?;
            model.use_cpu_kernels();
            let k = model.config.num_scales();
            let pb = scale_bar(settings.runs + 1, &what);
            let start = Instant::now();
            let now = || start.elapsed().as_secs_f64();
            let report = pollster::block_on(var_web::bench::run(
                &model,
                settings,
                backend.label(),
                &now,
                |round| {
                    pb.set_position(round as u64);
                    pb.set_message(if round == 0 {
                        format!("{what}, warm-up")
                    } else {
                        what.clone()
                    });
                },
            ));
            pb.finish_and_clear();
            let report = report?;
            debug_assert_eq!(report.scales.len(), k);
            peaks.push(peak_rss_mib());
            reports.push(report);
        }
    }
    print_bench(&reports, &peaks, settings);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&reports).expect("reports serialise");
        write_atomically(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `var bench --kernels`: every Linear shape of the model, f32 against int8, per backend.
fn bench_kernels(
    model_dir: Option<PathBuf>,
    depth: usize,
    backends: &[BenchBackend],
    runs: usize,
    json: Option<PathBuf>,
) -> Result<ExitCode> {
    let config = match &model_dir {
        Some(dir) => {
            let path = dir.join(var_web::modeldir::CONFIG_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| VarError::io(&path, e))?;
            ModelConfig::from_json(&text, &path.display().to_string())?
        }
        None => {
            let mut config = ModelConfig::official(depth);
            config.patch_nums = OFFICIAL_PATCH_NUMS.to_vec();
            config
        }
    };
    let mut all = Vec::new();
    for &backend in backends {
        let device = backend.device()?;
        let what = format!("{} on {}", model_label(&model_dir, depth), backend.label());
        let pb = scale_bar(var_web::bench::matmul_shapes(&config).len(), &what);
        let start = Instant::now();
        let now = || start.elapsed().as_secs_f64();
        let timings = pollster::block_on(var_web::bench::matmuls(
            &config,
            &device,
            runs,
            &now,
            |i, _| pb.set_position(i as u64),
        ));
        pb.finish_and_clear();
        let timings = timings?;
        let cpu = timings.iter().all(|t| t.cpu_f32_ms.is_some());
        let ours = if cpu {
            format!(" {:>10} {:>10}", "ours f32", "ours int8")
        } else {
            String::new()
        };
        println!(
            "{what}: median of {runs} runs, ms per matmul (M = 2 x tokens, CFG)\n{:<8} {:>2} {:>5} {:>5} {:>5} {:>10} {:>10} {:>8}{ours}",
            "layer", "si", "M", "K", "N", "f32 ms", "int8 ms", "int8/f32"
        );
        let mut totals = [0.0f64; 4];
        for t in &timings {
            let ours = match (t.cpu_f32_ms, t.cpu_int8_ms) {
                (Some(a), Some(b)) => format!(" {a:>10.3} {b:>10.3}"),
                _ => String::new(),
            };
            println!(
                "{:<8} {:>2} {:>5} {:>5} {:>5} {:>10.3} {:>10.3} {:>8.2}{ours}",
                t.layer,
                t.si,
                t.m,
                t.k,
                t.n,
                t.f32_ms,
                t.int8_ms,
                t.int8_ms / t.f32_ms
            );
            let times = [
                t.f32_ms,
                t.int8_ms,
                t.cpu_f32_ms.unwrap_or(0.0),
                t.cpu_int8_ms.unwrap_or(0.0),
            ];
            for (total, ms) in totals.iter_mut().zip(times) {
                *total += ms * t.per_image as f64;
            }
        }
        let [f32_total, int8_total, ours_f32, ours_int8] = totals.map(|ms| ms / 1e3);
        print!(
            "one image's Linear layers: f32 {f32_total:.2} s, int8 {int8_total:.2} s ({:.2}x)",
            int8_total / f32_total
        );
        if cpu {
            print!("; our CPU kernels: f32 {ours_f32:.2} s, int8 {ours_int8:.2} s");
        }
        println!("\n");
        all.push(serde_json::json!({ "backend": backend.label(), "matmuls": timings }));
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&all).expect("timings serialise");
        write_atomically(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn model_label(model_dir: &Option<PathBuf>, depth: usize) -> String {
    match model_dir {
        Some(dir) => dir.display().to_string(),
        None => format!("VAR-d{depth}"),
    }
}

/// The reports side by side: one column per configuration, seconds per scale.
fn print_bench(reports: &[BenchReport], peaks: &[Option<f64>], settings: &BenchSettings) {
    let Some(first) = reports.first() else {
        return;
    };
    println!(
        "{}: batch 1 with CFG {}, top-k {}, top-p {}; median of {} timed runs after a warm-up",
        first.model, settings.params.cfg, settings.params.top_k, settings.params.top_p, first.runs
    );
    let columns: Vec<String> = reports
        .iter()
        .map(|r| format!("{} {}", r.storage, r.backend))
        .collect();
    let header: String = columns.iter().map(|c| format!(" {c:>22}")).collect();
    println!("{:<16} {:>7} {:>9}{header}", "", "tokens", "GFLOP");
    let row = |label: &str, tokens: String, gflop: Option<f64>, cells: Vec<String>| {
        let cells: String = cells.iter().map(|c| format!(" {c:>22}")).collect();
        let gflop = gflop.map_or(String::new(), |g| format!("{g:.2}"));
        println!("{label:<16} {tokens:>7} {gflop:>9}{cells}");
    };
    let timed = |s: f64, gflop: f64| format!("{s:.3} s {:>6.1} GF/s", gflop / s);
    for (si, scale) in first.scales.iter().enumerate() {
        let cells = reports
            .iter()
            .map(|r| timed(r.scales[si].seconds, r.scales[si].gflop))
            .collect();
        row(
            &format!("scale {si}"),
            scale.tokens.to_string(),
            Some(scale.gflop),
            cells,
        );
    }
    let tokens: usize = first.scales.iter().map(|s| s.tokens).sum();
    let cells = reports
        .iter()
        .map(|r| timed(r.transformer_seconds, r.transformer_gflop))
        .collect();
    row(
        "transformer",
        tokens.to_string(),
        Some(first.transformer_gflop),
        cells,
    );
    if first.decode_seconds.is_some() {
        let cells = reports
            .iter()
            .map(|r| timed(r.decode_seconds.unwrap_or(f64::NAN), r.decode_gflop))
            .collect();
        row(
            "VQ-VAE decode",
            String::new(),
            Some(first.decode_gflop),
            cells,
        );
    }
    let cells = reports
        .iter()
        .map(|r| format!("{:.3} s", r.total_seconds))
        .collect();
    let decode_gflop = first.decode_seconds.map_or(0.0, |_| first.decode_gflop);
    row(
        "total",
        String::new(),
        Some(first.transformer_gflop + decode_gflop),
        cells,
    );
    let cells = peaks
        .iter()
        .map(|p| p.map_or("-".into(), |mib| format!("{mib:.0} MiB")))
        .collect();
    row("peak RSS", String::new(), None, cells);
    if reports.iter().any(|r| r.gpu_memory.is_some()) {
        let gpu = |f: &dyn Fn(&GpuMemory) -> String| -> Vec<String> {
            reports
                .iter()
                .map(|r| r.gpu_memory.as_ref().map_or("-".into(), f))
                .collect()
        };
        let cells = gpu(&|m| format!("{:.1} MiB", m.in_use_mib_after_warmup));
        row("GPU in use", String::new(), None, cells);
        let cells = gpu(&|m| format!("{:.0} MiB", m.reserved_mib_peak));
        row("GPU reserved", String::new(), None, cells);
        let cells = gpu(&|m| m.pages_allocated_in_timed_runs.to_string());
        row("GPU allocs, timed", String::new(), None, cells);
    }
}
