//! Loss curves of the training runs (plotters); sample grids are [`crate::picture`]'s.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, VarError};
use crate::files::write_atomically;
use crate::picture::encode_png;

/// TrueType fonts tried for the plots' labels (Debian's `fonts-dejavu-core` first).
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn register_font() -> Result<()> {
    static FONT: std::sync::OnceLock<Option<&'static [u8]>> = std::sync::OnceLock::new();
    let font = FONT.get_or_init(|| {
        FONTS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .map(|b| &*Box::leak(b.into_boxed_slice()))
    });
    let bytes = font.ok_or_else(|| {
        VarError::InvalidArgument(format!(
            "no TrueType font for the plot's labels (looked for {}); apt-get install fonts-dejavu-core",
            FONTS.join(", ")
        ))
    })?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| VarError::InvalidArgument("the plot font does not parse".into()))
}

/// Plots `columns` of a CSV log (first column: step) against the step as a PNG. Empty cells
/// (values logged only at checkpoints) are skipped; the training loss is smoothed over 50 steps
/// because single batches are noisy.
pub fn loss_curve(csv: &Path, png_path: &Path, title: &str, columns: &[&str]) -> Result<()> {
    register_font()?;
    let text = std::fs::read_to_string(csv).map_err(|e| VarError::io(csv, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    // One row per step, the last one logged: a log written by an interrupted run and its resumed
    // continuation may repeat steps.
    let mut by_step: std::collections::BTreeMap<u64, Vec<&str>> = Default::default();
    for line in lines {
        let row: Vec<&str> = line.split(',').collect();
        if let Some(step) = row.first().and_then(|s| s.parse().ok()) {
            by_step.insert(step, row);
        }
    }
    let rows: Vec<Vec<&str>> = by_step.into_values().collect();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for name in columns {
        let Some(col) = header.iter().position(|h| h == name) else {
            continue;
        };
        let mut pts: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((r.first()?.parse().ok()?, r.get(col)?.parse().ok()?)))
            .filter(|(_, y): &(f64, f64)| y.is_finite())
            .collect();
        let dense = pts.len() * 2 > rows.len();
        let mut label = name.to_string();
        if dense && pts.len() > 50 {
            label.push_str(" (mean of 50 steps)");
            let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
            for (i, p) in pts.iter_mut().enumerate() {
                let lo = i.saturating_sub(49);
                p.1 = ys[lo..=i].iter().sum::<f64>() / (i + 1 - lo) as f64;
            }
        }
        series.push((label, pts));
    }
    let all = series.iter().flat_map(|s| s.1.iter());
    let (x_max, y_min, y_max) = all.fold((1.0f64, f64::MAX, f64::MIN), |(x, lo, hi), p| {
        (x.max(p.0), lo.min(p.1), hi.max(p.1))
    });
    if y_min > y_max {
        return Err(VarError::InvalidArgument(format!(
            "{} has no values to plot yet",
            csv.display()
        )));
    }
    let (w, h) = (800u32, 480u32);
    let mut px = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut px, (w, h)).into_drawing_area();
        let plot_err = |e: &dyn std::fmt::Display| VarError::InvalidArgument(format!("plot: {e}"));
        let pad = (y_max - y_min).max(1e-6) * 0.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| plot_err(&e))?;
        let colours = [BLUE, RED, GREEN, MAGENTA];
        for (i, (name, pts)) in series.into_iter().enumerate() {
            let colour = colours[i % colours.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(|e| plot_err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
            if pts.len() < 200 {
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    .map_err(|e| plot_err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&e))?;
        root.present().map_err(|e| plot_err(&e))?;
    }
    write_atomically(png_path, &encode_png(&px, w as usize, h as usize)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_curve_draws_the_logged_series() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("log.csv");
        let mut text = String::from("step,loss,val_loss\n");
        for s in 1..=120 {
            let v = if s % 40 == 0 {
                format!("{}", 2.0 / s as f64)
            } else {
                String::new()
            };
            text.push_str(&format!("{s},{},{v}\n", 3.0 / s as f64));
        }
        std::fs::write(&csv, text).unwrap();
        let png_path = dir.path().join("loss.png");
        loss_curve(&csv, &png_path, "test", &["loss", "val_loss"]).unwrap();
        let buf = image::open(&png_path).unwrap().to_rgb8().into_raw();
        // Blue (the training loss) and red (validation) pixels were drawn.
        let has = |r: u8, g: u8, b: u8| buf.chunks_exact(3).any(|p| p == [r, g, b]);
        assert!(has(0, 0, 255) && has(255, 0, 0));
    }
}
