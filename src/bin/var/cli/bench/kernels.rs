//! `var bench --kernels`: the transformer's Linear layers alone, f32 against int8; `var bench
//! --convs`: the decode's convolutions alone, direct against Winograd.

use std::process::ExitCode;
use std::time::Instant;

use var_web::bench::{conv_shapes, convolutions, matmul_shapes, matmuls};
use var_web::config::ModelConfig;
use var_web::error::{Result, VarError};
use var_web::modeldir::CONFIG_FILE;

use super::{Args, BenchBackend, write_json};
use crate::cli::progress::scale_bar;

/// The model's configuration: its directory's, or the official preset's.
fn config(args: &Args) -> Result<ModelConfig> {
    Ok(match &args.model {
        Some(dir) => {
            let path = dir.join(CONFIG_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| VarError::io(&path, e))?;
            ModelConfig::from_json(&text, &path.display().to_string())?
        }
        None => ModelConfig::official(args.depth),
    })
}

/// `var bench --convs`: every distinct convolution of one decode on the CPU kernels, direct
/// against the algorithm the model uses.
pub fn run_convs(args: &Args) -> Result<ExitCode> {
    let runs = args.runs;
    let config = config(args)?;
    if args.backend != [BenchBackend::Cpu] {
        return Err(VarError::InvalidArgument(
            "--convs times our CPU kernels: use it with --backend cpu (the default)".into(),
        ));
    }
    let what = format!("{} decode at {} px", args.model_label(), config.image_size);
    let pb = scale_bar(conv_shapes(&config).len(), &what);
    let start = Instant::now();
    let now = || start.elapsed().as_secs_f64();
    let timings = convolutions(&config, runs, &now, |i, _| pb.set_position(i as u64));
    pb.finish_and_clear();
    let Some(timings) = timings else {
        return Err(VarError::InvalidArgument(
            "--convs needs our CPU kernels, and this CPU has neither AVX2+FMA nor AVX-512".into(),
        ));
    };
    println!(
        "{what}: median of {runs} runs, ms per convolution (batch 1)\n{:>2} {:>5} {:>5} {:>5} {:>5} {:>11} {:>10} {:>9} {:>8} {:>9}",
        "k", "c_in", "c_out", "side", "count", "direct ms", "GFLOP/s", "algorithm", "ms", "GFLOP/s"
    );
    let (mut direct, mut chosen, mut flops) = (0.0f64, 0.0f64, 0.0f64);
    for t in &timings {
        let f = t.conv.flops();
        println!(
            "{:>2} {:>5} {:>5} {:>5} {:>5} {:>11.2} {:>10.1} {:>9} {:>8.2} {:>9.1}",
            t.conv.kernel,
            t.conv.c_in,
            t.conv.c_out,
            t.conv.side,
            t.per_image,
            t.direct_ms,
            f / t.direct_ms / 1e6,
            t.algorithm,
            t.chosen_ms,
            f / t.chosen_ms / 1e6
        );
        direct += t.direct_ms * t.per_image as f64;
        chosen += t.chosen_ms * t.per_image as f64;
        flops += f * t.per_image as f64;
    }
    println!(
        "one decode's convolutions ({:.2} GFLOP): direct {:.3} s, as the model runs them {:.3} s ({:.2}x)\n",
        flops / 1e9,
        direct / 1e3,
        chosen / 1e3,
        direct / chosen
    );
    write_json(args.json.as_deref(), &timings)?;
    Ok(ExitCode::SUCCESS)
}

/// `var bench --kernels`: every Linear shape of the model, f32 against int8, per backend.
pub fn run(args: &Args) -> Result<ExitCode> {
    let runs = args.runs;
    let config = config(args)?;
    let mut all = Vec::new();
    for &backend in &args.backend {
        let device = backend.device()?;
        let what = format!("{} on {}", args.model_label(), backend.label());
        let pb = scale_bar(matmul_shapes(&config).len(), &what);
        let start = Instant::now();
        let now = || start.elapsed().as_secs_f64();
        let timings = pollster::block_on(matmuls(&config, &device, runs, &now, |i, _| {
            pb.set_position(i as u64)
        }));
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
    write_json(args.json.as_deref(), &all)?;
    Ok(ExitCode::SUCCESS)
}
