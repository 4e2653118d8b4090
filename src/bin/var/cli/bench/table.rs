//! The `var bench` table: one column per configuration.

use var_web::bench::dispatches::DispatchCounts;
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
    print_dispatches(reports);
}

/// Kernels listed per configuration: the most dispatched, then the rest summed.
const KERNELS_LISTED: usize = 12;

/// A kernel's name cut to its first generic parameters (burn's matmul names two dozen; the
/// JSON report keeps them all).
fn shortened(kernel: &str) -> String {
    const PARTS: usize = 4;
    let parts: Vec<&str> = kernel.split(" | ").collect();
    if parts.len() <= PARTS {
        return kernel.to_string();
    }
    format!(
        "{} | … ({} more)",
        parts[..PARTS].join(" | "),
        parts.len() - PARTS
    )
}

/// On a GPU: dispatches per scale, for the decode and per image, then each configuration's
/// most dispatched kernels.
fn print_dispatches(reports: &[BenchReport]) {
    let counted: Vec<(String, DispatchCounts)> = reports
        .iter()
        .filter_map(|r| {
            let d = r.dispatches.clone()?;
            if r.dispatches_per_timed_image.iter().any(|&n| n != d.per_image) {
                println!(
                    "note: {} {}: the timed images issued {:?} dispatches, not the same work each time",
                    r.storage, r.backend, r.dispatches_per_timed_image
                );
            }
            Some((format!("{} {}", r.storage, r.backend), d))
        })
        .collect();
    if !counted.is_empty() {
        println!();
        print_dispatch_counts(&counted);
    }
}

/// Dispatch counts side by side (one column per configuration), then each one's most
/// dispatched kernels.
pub fn print_dispatch_counts(counted: &[(String, DispatchCounts)]) {
    let Some((_, first)) = counted.first() else {
        return;
    };
    println!("kernel dispatches of one image (counted at each launch)");
    let header: String = counted.iter().map(|(c, _)| format!(" {c:>22}")).collect();
    println!("{:<16}{header}", "");
    let row = |label: &str, f: &dyn Fn(&DispatchCounts) -> u64| {
        let cells: String = counted
            .iter()
            .map(|(_, d)| format!(" {:>22}", f(d)))
            .collect();
        println!("{label:<16}{cells}");
    };
    for si in 0..first.per_scale.len() {
        row(&format!("scale {si}"), &|d| d.per_scale[si]);
    }
    row("VQ-VAE decode", &|d| d.decode);
    row("per image", &|d| d.per_image);
    for (label, d) in counted {
        println!("\n{label}: the most dispatched kernels");
        for k in d.by_kernel.iter().take(KERNELS_LISTED) {
            println!("{:>8}  {}", k.count, shortened(&k.kernel));
        }
        let rest = &d.by_kernel[d.by_kernel.len().min(KERNELS_LISTED)..];
        if !rest.is_empty() {
            let n: u64 = rest.iter().map(|k| k.count).sum();
            println!("{n:>8}  ({} other kernels)", rest.len());
        }
    }
}
