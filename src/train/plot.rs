//! Pictures a run writes: sample grids (PNG via the `png` crate) and loss curves (plotters).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, VarError};

/// RGB images of `size`² laid out `cols` per row, with a 2-pixel grey gutter, as PNG bytes.
pub fn grid_png(images: &[Vec<u8>], size: usize, cols: usize) -> Result<Vec<u8>> {
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols);
    let gap = 2;
    let (w, h) = (cols * (size + gap) + gap, rows * (size + gap) + gap);
    let mut px = vec![96u8; w * h * 3];
    for (i, img) in images.iter().enumerate() {
        let (x0, y0) = (
            gap + (i % cols) * (size + gap),
            gap + (i / cols) * (size + gap),
        );
        for y in 0..size {
            let dst = ((y0 + y) * w + x0) * 3;
            px[dst..dst + size * 3].copy_from_slice(&img[y * size * 3..(y + 1) * size * 3]);
        }
    }
    encode_png(&px, w, h)
}

/// RGB8 pixels → PNG bytes.
pub fn encode_png(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| VarError::InvalidArgument(format!("PNG encoding: {e}"));
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Writes a file so that readers see the old or the new contents, never a torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| VarError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| VarError::io(path, e))
}

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
    fn grid_places_each_image_in_its_cell() {
        let a = vec![255u8; 2 * 2 * 3];
        let b = vec![0u8; 2 * 2 * 3];
        let bytes = grid_png(&[a, b.clone(), b], 2, 2).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2 * 4 + 2, 2 * 4 + 2));
        let at = |x: usize, y: usize| buf[(y * info.width as usize + x) * 3];
        assert_eq!((at(2, 2), at(6, 2), at(2, 6), at(0, 0)), (255, 0, 0, 96));
    }

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
        let dec = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&png_path).unwrap(),
        ));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        // Blue (the training loss) and red (validation) pixels were drawn.
        let has = |r: u8, g: u8, b: u8| buf.chunks_exact(3).any(|p| p == [r, g, b]);
        assert!(has(0, 0, 255) && has(255, 0, 0));
    }
}
