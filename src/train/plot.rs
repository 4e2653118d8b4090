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

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn plot_err(e: &dyn std::fmt::Display) -> VarError {
    VarError::InvalidArgument(format!("plot: {e}"))
}

/// Draws a `w` x `h` chart with `draw` and writes it to `png_path` as a PNG, atomically.
fn render(
    (w, h): (u32, u32),
    png_path: &Path,
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<()> {
    let mut px = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut px, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| plot_err(&e))?;
    }
    write_atomically(png_path, &encode_png(&px, w as usize, h as usize)?)
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
    render((800, 480), png_path, |root| {
        let pad = (y_max - y_min).max(1e-6) * 0.05;
        let mut chart = ChartBuilder::on(root)
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
            .map_err(|e| plot_err(&e))
    })
}

/// One `var eval` run as the trade-off plot needs it.
#[derive(Clone, Debug)]
pub struct EvalPoint {
    /// What distinguishes the run, e.g. "cfg 5".
    pub label: String,
    pub frechet: f64,
    /// Class adherence overall and of the worst class, in [0, 1].
    pub adherence: f64,
    pub worst_class: f64,
    pub floor: f64,
    /// The tokenizer's ceiling: the Fréchet distance of the VQ-VAE's reconstructions.
    pub ceiling: Option<f64>,
}

impl EvalPoint {
    /// Reads an `eval.json` written by `var eval`, labelled by its sampling settings.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |what: &str| VarError::InvalidArgument(format!("{}: {what}", path.display()));
        let text = crate::files::read_regular(path, 1 << 20)?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let num = |key: &str| {
            v[key]
                .as_f64()
                .ok_or_else(|| bad(&format!("no number {key}")))
        };
        let classes = v["class_accuracy"]
            .as_array()
            .ok_or_else(|| bad("no class_accuracy"))?;
        let worst_class = classes
            .iter()
            .filter_map(|a| a.as_f64())
            .fold(f64::INFINITY, f64::min);
        // Short, as the points crowd: "3" for CFG 3 with top-p, "3, p 1" without.
        let s = &v["sampling"];
        let mut label = format!("{}", s["cfg"].as_f64().unwrap_or(f64::NAN));
        if let Some(p) = s["top_p"].as_f64() {
            label.push_str(&format!(", p {p}"));
        }
        if s["top_k"].as_u64().is_some_and(|k| k > 0) {
            label.push_str(&format!(", k {}", s["top_k"]));
        }
        Ok(Self {
            label,
            frechet: num("frechet")?,
            adherence: num("class_accuracy_overall")?,
            worst_class,
            floor: num("frechet_floor")?,
            ceiling: v["reconstruction"]["frechet"].as_f64(),
        })
    }
}

/// Class adherence (overall and worst class) against the Fréchet distance, one point per
/// evaluation, with the floor and the tokenizer's ceiling drawn as vertical lines: the
/// trade-off the sampling defaults are chosen on.
pub fn tradeoff(points: &[EvalPoint], png_path: &Path, title: &str) -> Result<()> {
    register_font()?;
    if points.is_empty() {
        return Err(VarError::InvalidArgument("no evaluations to plot".into()));
    }
    let floor = points.iter().map(|p| p.floor).fold(f64::INFINITY, f64::min);
    let ceiling = points.iter().filter_map(|p| p.ceiling).reduce(f64::min);
    let x_max = points.iter().map(|p| p.frechet).fold(floor, f64::max) * 1.1;
    let y_min = points.iter().map(|p| p.worst_class).fold(1.0, f64::min);
    let y_min = ((y_min * 100.0 - 5.0) / 5.0).floor() * 5.0;
    render((800, 520), png_path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, y_min.max(0.0)..104.0)
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_mesh()
            .x_desc("Fréchet distance (classifier features; lower is closer to the data)")
            .y_desc("class adherence, %")
            .draw()
            .map_err(|e| plot_err(&e))?;
        let mut lines = vec![(floor, "floor (training images)", BLACK)];
        if let Some(c) = ceiling {
            lines.push((c, "the tokenizer's ceiling (reconstructions)", GREEN));
        }
        for (x, name, colour) in lines {
            chart
                .draw_series(LineSeries::new(
                    [(x, y_min.max(0.0)), (x, 104.0)],
                    colour.stroke_width(1),
                ))
                .map_err(|e| plot_err(&e))?
                .label(format!("{name}: {x:.1}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
        }
        let series = [
            (
                "overall",
                BLUE,
                points.iter().map(|p| p.adherence).collect::<Vec<_>>(),
            ),
            (
                "worst class",
                RED,
                points.iter().map(|p| p.worst_class).collect(),
            ),
        ];
        for (name, colour, ys) in series {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .zip(ys)
                .map(|(p, y)| (p.frechet, y * 100.0))
                .collect();
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(|e| plot_err(&e))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
        }
        // Each run's two points joined, its label above the upper one.
        for p in points {
            let (top, bottom) = (p.adherence * 100.0, p.worst_class * 100.0);
            chart
                .draw_series(LineSeries::new(
                    [(p.frechet, bottom), (p.frechet, top)],
                    BLACK.mix(0.3).stroke_width(1),
                ))
                .map_err(|e| plot_err(&e))?;
        }
        // Three heights in order of distance, so neighbours' labels do not overlap.
        let mut by_distance: Vec<&EvalPoint> = points.iter().collect();
        by_distance.sort_by(|a, b| a.frechet.total_cmp(&b.frechet));
        chart
            .draw_series(by_distance.into_iter().enumerate().map(|(i, p)| {
                let lift = [-20, -34, -48][i % 3];
                EmptyElement::at((p.frechet, p.adherence * 100.0))
                    + Text::new(p.label.clone(), (-12, lift), ("sans-serif", 13).into_font())
            }))
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tradeoff_plots_every_evaluation_and_refuses_a_foreign_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (cfg, fd, acc) in [(2.0, 8.0, 0.9), (5.0, 20.0, 0.97)] {
            let json = serde_json::json!({
                "sampling": {"cfg": cfg, "top_p": 0.95, "top_k": 0},
                "frechet": fd, "frechet_floor": 1.6, "class_accuracy_overall": acc,
                "class_accuracy": [acc, acc - 0.1],
                "reconstruction": {"frechet": 4.0},
            });
            let path = dir.path().join(format!("eval-{cfg}.json"));
            std::fs::write(&path, json.to_string()).unwrap();
            paths.push(path);
        }
        let points: Vec<EvalPoint> = paths.iter().map(|p| EvalPoint::read(p).unwrap()).collect();
        assert_eq!(points[0].label, "2, p 0.95");
        assert!((points[1].worst_class - 0.87).abs() < 1e-9);
        let png_path = dir.path().join("tradeoff.png");
        tradeoff(&points, &png_path, "test").unwrap();
        let buf = image::open(&png_path).unwrap().to_rgb8().into_raw();
        let has = |r: u8, g: u8, b: u8| buf.chunks_exact(3).any(|p| p == [r, g, b]);
        assert!(has(0, 0, 255) && has(255, 0, 0) && has(0, 255, 0));
        std::fs::write(&paths[0], "{}").unwrap();
        let err = EvalPoint::read(&paths[0]).unwrap_err().to_string();
        assert!(
            err.contains("no number frechet") || err.contains("class_accuracy"),
            "{err}"
        );
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
        let buf = image::open(&png_path).unwrap().to_rgb8().into_raw();
        // Blue (the training loss) and red (validation) pixels were drawn.
        let has = |r: u8, g: u8, b: u8| buf.chunks_exact(3).any(|p| p == [r, g, b]);
        assert!(has(0, 0, 255) && has(255, 0, 0));
    }
}
