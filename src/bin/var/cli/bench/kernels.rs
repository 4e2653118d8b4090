//! `var bench --kernels`: the transformer's Linear layers alone, f32 against int8.

use std::process::ExitCode;
use std::time::Instant;

use var_web::bench::{matmul_shapes, matmuls};
use var_web::config::ModelConfig;
use var_web::error::{Result, VarError};
use var_web::modeldir::CONFIG_FILE;

use super::{Args, write_json};
use crate::cli::progress::scale_bar;

/// `var bench --kernels`: every Linear shape of the model, f32 against int8, per backend.
pub fn run(args: &Args) -> Result<ExitCode> {
    let runs = args.runs;
    let config = match &args.model {
        Some(dir) => {
            let path = dir.join(CONFIG_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| VarError::io(&path, e))?;
            ModelConfig::from_json(&text, &path.display().to_string())?
        }
        None => ModelConfig::official(args.depth),
    };
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
