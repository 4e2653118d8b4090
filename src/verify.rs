//! Parity with the reference implementation: the four checks of the golden fixtures
//! (`tests/fixtures/README.md`), shared by `var verify` and the test suite.

use std::ops::ControlFlow;

use burn::tensor::{Int, Tensor, TensorData};
use serde::Deserialize;

use crate::config::SamplingParams;
use crate::error::{Result, VarError};
use crate::generate::generate;
use crate::model::Model;
use crate::readback::{read_f32, read_i64};
use crate::weights::safetensors::SafetensorsSource;

/// The part of a golden JSON the checks need.
#[derive(Debug, Deserialize)]
pub struct GoldenMeta {
    pub patch_nums: Vec<usize>,
    pub greedy_cfgs: Vec<f32>,
    pub greedy_labels: Vec<usize>,
}

/// One check's outcome: worst absolute errors (or agreement) against their tolerances.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    /// `(what, measured, limit, higher_is_better)`.
    pub measures: Vec<(String, f64, f64, bool)>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.measures
            .iter()
            .all(|(_, v, lim, higher)| if *higher { v >= lim } else { v <= lim })
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<8} {}",
            self.name,
            if self.passed() { "ok  " } else { "FAIL" }
        )?;
        for (what, v, lim, higher) in &self.measures {
            if *higher {
                // Agreements are shares: shown as percentages.
                write!(f, "  {what} {:.2}% (>= {:.1}%)", v * 100.0, lim * 100.0)?;
            } else {
                write!(f, "  {what} {v:.3e} (<= {lim:.0e})")?;
            }
        }
        Ok(())
    }
}

/// Tolerances a correct f32 port reaches (fixture README).
pub const TOL_LATENT: f64 = 1e-4;
pub const TOL_IMAGE: f64 = 1e-3;
pub const MIN_TOKEN_AGREEMENT: f64 = 0.995;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
}

struct Golden<'a> {
    src: SafetensorsSource<'a>,
    device: burn::tensor::Device,
}

impl Golden<'_> {
    fn values(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.src.read_any(key)
    }
    fn tensor<const D: usize>(&self, key: &str) -> Result<Tensor<D>> {
        let (shape, v) = self.values(key)?;
        if shape.len() != D {
            return Err(VarError::Config(format!(
                "golden tensor {key} has rank {}, expected {D}",
                shape.len()
            )));
        }
        Ok(Tensor::from_data(TensorData::new(v, shape), &self.device))
    }
    fn tokens(&self, prefix: &str, scales: usize) -> Result<Vec<Tensor<2, Int>>> {
        (0..scales)
            .map(|k| {
                let (shape, v) = self.values(&format!("{prefix}.{k}"))?;
                let v: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
                Ok(Tensor::from_data(TensorData::new(v, shape), &self.device))
            })
            .collect()
    }
}

/// Runs the four checks (decode, encode, forward, greedy) against a golden file.
pub async fn verify(model: &Model, golden_bytes: &[u8], meta: &GoldenMeta) -> Result<Vec<Check>> {
    if meta.patch_nums != model.config.patch_nums {
        return Err(VarError::Config(format!(
            "the golden file uses patch_nums {:?} but the model has {:?}",
            meta.patch_nums, model.config.patch_nums
        )));
    }
    let g = Golden {
        src: SafetensorsSource::new(golden_bytes, "golden")?,
        device: model.device(),
    };
    let k = meta.patch_nums.len();
    let vae = &model.vqvae;
    let mut checks = Vec::new();

    // 1. Algorithm 2 and the decoder on random tokens.
    let tokens = g.tokens("decode.idx", k)?;
    let f_hat = vae.quantize.decode(&tokens);
    let img = vae.fhat_to_img(f_hat.clone());
    checks.push(Check {
        name: "decode",
        measures: vec![
            (
                "f_hat".into(),
                max_abs_diff(&read_f32(f_hat).await?, &g.values("decode.fhat")?.1),
                TOL_LATENT,
                false,
            ),
            (
                "img".into(),
                max_abs_diff(&read_f32(img).await?, &g.values("decode.img")?.1),
                TOL_IMAGE,
                false,
            ),
        ],
    });

    // 2. The encoder and Algorithm 1.
    let f = vae.img_to_f(g.tensor::<4>("encode.img")?);
    let (ours, f_hat) = vae.quantize.encode(f.clone());
    let (mut same, mut total) = (0usize, 0usize);
    for (si, idx) in ours.iter().enumerate() {
        let mine = read_i64(idx.clone()).await?;
        let want = g.values(&format!("encode.idx.{si}"))?.1;
        total += want.len();
        same += mine
            .iter()
            .zip(&want)
            .filter(|(a, b)| **a as f32 == **b)
            .count();
    }
    checks.push(Check {
        name: "encode",
        measures: vec![
            (
                "f".into(),
                max_abs_diff(&read_f32(f).await?, &g.values("encode.f")?.1),
                TOL_LATENT,
                false,
            ),
            (
                "tokens".into(),
                same as f64 / total.max(1) as f64,
                MIN_TOKEN_AGREEMENT,
                true,
            ),
            (
                "f_hat".into(),
                max_abs_diff(&read_f32(f_hat).await?, &g.values("encode.fhat")?.1),
                TOL_LATENT,
                false,
            ),
        ],
    });

    // 3. Teacher forcing: the input built from the reference's tokens, and the logits.
    let x = vae
        .quantize
        .teacher_forcing_input(&g.tokens("encode.idx", k)?);
    let x_err = max_abs_diff(&read_f32(x).await?, &g.values("forward.x")?.1);
    let (_, labels) = g.values("forward.label")?;
    let labels: Vec<i64> = labels.into_iter().map(|x| x as i64).collect();
    let n = labels.len();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &g.device);
    let logits = model.var.forward(labels, g.tensor::<3>("forward.x")?);
    let l_err = max_abs_diff(&read_f32(logits).await?, &g.values("forward.logits")?.1);
    checks.push(Check {
        name: "forward",
        measures: vec![
            ("input".into(), x_err, TOL_LATENT, false),
            ("logits".into(), l_err, TOL_LATENT, false),
        ],
    });

    // 4. Greedy generation with CFG end to end, at every guidance strength of the fixture.
    let mut measures = Vec::new();
    for (c, &cfg) in meta.greedy_cfgs.iter().enumerate() {
        let img = generate(
            model,
            &meta.greedy_labels,
            &SamplingParams::greedy(cfg),
            None,
            |_| ControlFlow::Continue(()),
        )
        .await?;
        let err = max_abs_diff(
            &read_f32(img).await?,
            &g.values(&format!("greedy{c}.img01"))?.1,
        );
        measures.push((format!("img@cfg{cfg}"), err, TOL_IMAGE, false));
    }
    checks.push(Check {
        name: "greedy",
        measures,
    });
    Ok(checks)
}
