//! `var bench`: generation timed per scale, configurations side by side; or, with
//! `--kernels`, the transformer's Linear layers alone, and with `--convs`, the VQ-VAE
//! decode's convolutions alone.

mod kernels;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::Device;
use serde::Serialize;

use var_web::bench::BenchSettings;
use var_web::config::Storage;
use var_web::error::Result;
use var_web::files::write_atomically;
use var_web::model::Model;
use var_web::modeldir::{self, LoadOptions};
use var_web::nn::Kernels;

use super::progress::{scale_bar, spinner};

#[derive(clap::Args)]
pub struct Args {
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
    /// Count the kernel dispatches of one image on wgpu without running them (a CubeCL dry
    /// run: every launch compiled and counted, then dropped), by scale and by kernel; no
    /// timings. Seconds on a software adapter, where a real VAR-d16 image takes minutes.
    #[arg(long, conflicts_with = "kernels")]
    dispatches: bool,
    /// Time each convolution of the VQ-VAE decode alone on our CPU kernels (batch 1), direct
    /// (im2col) against the algorithm the model uses for it (Winograd F(2x2, 3x3) for the
    /// 3x3 ones); CPU only.
    #[arg(long, conflicts_with_all = ["kernels", "dispatches"])]
    convs: bool,
    /// Also write the reports as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        if self.kernels {
            return kernels::run(&self);
        }
        if self.convs {
            return kernels::run_convs(&self);
        }
        let settings = BenchSettings::reference(self.runs, self.top_k, !self.no_decode);
        if self.dispatches {
            return self.count_dispatches(&settings);
        }
        let mut reports = Vec::new();
        let mut peaks = Vec::new();
        for &backend in &self.backend {
            let device = backend.device()?;
            for &storage in &self.precision {
                reset_peak_rss();
                let what = format!("{} {storage:?} on {}", self.model_label(), backend.label());
                let pb = spinner(&format!("loading {what}"));
                let model = self.load(storage, &device);
                pb.finish_and_clear();
                let model = model?;
                let k = model.config.num_scales();
                let pb = scale_bar(settings.runs + 1, &what);
                let start = Instant::now();
                let now = || start.elapsed().as_secs_f64();
                let report = pollster::block_on(var_web::bench::run(
                    &model,
                    &settings,
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
        table::print(&reports, &peaks, &settings);
        write_json(self.json.as_deref(), &reports)?;
        Ok(ExitCode::SUCCESS)
    }

    /// `--dispatches`: every precision on wgpu, counted under a dry run.
    fn count_dispatches(&self, settings: &BenchSettings) -> Result<ExitCode> {
        if self.backend != [BenchBackend::Wgpu] {
            return Err(var_web::error::VarError::InvalidArgument(
                "--dispatches counts GPU kernel launches: use it with --backend wgpu".into(),
            ));
        }
        let device = BenchBackend::Wgpu.device()?;
        let mut counted = Vec::new();
        for &storage in &self.precision {
            let what = format!("{} {storage:?} on wgpu", self.model_label());
            let pb = spinner(&format!("loading {what}"));
            let model = self.load(storage, &device);
            pb.set_message(format!("counting the dispatches of {what} (dry run)"));
            let counts = model.and_then(|model| {
                pollster::block_on(var_web::bench::dispatches::count_dry(
                    &model,
                    &settings.params,
                    settings.decode,
                ))
            });
            pb.finish_and_clear();
            counted.push((format!("{} {storage:?}", self.model_label()), counts?));
        }
        table::print_dispatch_counts(&counted);
        write_json(self.json.as_deref(), &counted)?;
        Ok(ExitCode::SUCCESS)
    }

    /// The model directory read as `storage`, or the official preset with random weights
    /// stored that way.
    fn load(&self, storage: Storage, device: &Device) -> Result<Model> {
        match &self.model {
            Some(dir) => modeldir::load(
                dir,
                device,
                &LoadOptions {
                    read_as: Some(storage),
                    ..LoadOptions::inference()
                },
            ),
            None => Model::random_official(self.depth, storage, device, Kernels::CpuPacked),
        }
    }

    fn model_label(&self) -> String {
        match &self.model {
            Some(dir) => dir.display().to_string(),
            None => format!("VAR-d{}", self.depth),
        }
    }
}

/// `--json`: the results as pretty JSON, if asked for.
fn write_json(path: Option<&Path>, results: &impl Serialize) -> Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(results).expect("results serialise");
        write_atomically(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
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
pub enum BenchBackend {
    Cpu,
    Wgpu,
}

impl BenchBackend {
    fn device(self) -> Result<Device> {
        match self {
            BenchBackend::Cpu => Ok(Device::flex()),
            BenchBackend::Wgpu => var_web::devices::wgpu(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            BenchBackend::Cpu => "burn-flex CPU",
            BenchBackend::Wgpu => "wgpu",
        }
    }
}
