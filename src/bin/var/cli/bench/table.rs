//! The `var bench` table: one column per configuration.

use var_web::bench::{BenchReport, BenchSettings, GpuMemory};

/// The reports side by side: one column per configuration, seconds per scale.
pub fn print(reports: &[BenchReport], peaks: &[Option<f64>], settings: &BenchSettings) {
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
