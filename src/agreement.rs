//! How closely a reduced-precision model follows its f32 original (`var agreement`):
//! teacher-forced logits on token maps sampled from the original (KL divergence and top-1
//! agreement), and greedy generation from the same classes and seeds (token agreement and
//! identical images).

use std::ops::ControlFlow;

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

use crate::config::SamplingParams;
use crate::error::{Result, VarError};
use crate::generate::generate;
use crate::model::Model;
use crate::readback::read_f32;

#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    /// Token maps compared (one per class in turn).
    pub sequences: usize,
    /// Mean over every position of KL(original ‖ candidate) of the next-token distributions.
    pub kl: f64,
    /// Share of positions where both models' most likely token is the same.
    pub top1: f64,
    /// Greedy generation (top-k 1, the original's CFG): share of tokens that agree.
    pub greedy_tokens: f64,
    /// Greedy generation: images whose every token agrees.
    pub greedy_identical: usize,
}

/// Compares `candidate` with `original` on `n` sequences (classes 0, 1, … in turn, seeds
/// `seed`, `seed + 1`, …).
pub async fn compare(
    original: &Model,
    candidate: &Model,
    n: usize,
    seed: u64,
) -> Result<Agreement> {
    if original.config.patch_nums != candidate.config.patch_nums
        || original.config.vqvae.vocab_size != candidate.config.vqvae.vocab_size
        || original.config.var.num_classes != candidate.config.var.num_classes
    {
        return Err(VarError::InvalidArgument(
            "the two models differ in scales, vocabulary or classes; compare a model with its own quantized copy".into(),
        ));
    }
    if n == 0 {
        return Err(VarError::InvalidArgument(
            "compare at least one sequence".into(),
        ));
    }
    let labels: Vec<usize> = (0..n)
        .map(|i| i % original.config.var.num_classes)
        .collect();
    let sampled = tokens_of(original, &labels, &original.config.sampling.with_seed(seed)).await?;

    // Teacher forcing: each model reads the same token maps through its own VQ-VAE.
    let (mut same, mut positions) = (0usize, 0usize);
    let (ref_logits, cand_logits) = (
        teacher_forced(original, &labels, &sampled)?,
        teacher_forced(candidate, &labels, &sampled)?,
    );
    // The two models may live on different devices (the GPU kernel vs the CPU).
    let cand_logits = cand_logits.to_device(&ref_logits.device());
    let v = original.config.vqvae.vocab_size;
    let p = softmax(ref_logits.clone(), 2);
    let kl =
        (p * (log_softmax(ref_logits.clone(), 2) - log_softmax(cand_logits.clone(), 2))).sum_dim(2);
    let kl = read_f32(kl).await?;
    let (a, b) = (read_f32(ref_logits).await?, read_f32(cand_logits).await?);
    for (ra, rb) in a.chunks_exact(v).zip(b.chunks_exact(v)) {
        same += (argmax(ra) == argmax(rb)) as usize;
        positions += 1;
    }
    let kl_sum: f64 = kl.iter().map(|&x| x as f64).sum();

    let greedy = SamplingParams {
        top_k: 1,
        ..original.config.sampling.with_seed(seed)
    };
    let g_ref = tokens_of(original, &labels, &greedy).await?;
    let g_cand = tokens_of(candidate, &labels, &greedy).await?;
    let (mut agree, mut total) = (0usize, 0usize);
    let mut identical = vec![true; n];
    for (sa, sb) in g_ref.iter().zip(&g_cand) {
        let per = sa.len() / n;
        for (j, (x, y)) in sa.iter().zip(sb).enumerate() {
            total += 1;
            if x == y {
                agree += 1;
            } else {
                identical[j / per] = false;
            }
        }
    }
    Ok(Agreement {
        sequences: n,
        kl: kl_sum / positions as f64,
        top1: same as f64 / positions as f64,
        greedy_tokens: agree as f64 / total as f64,
        greedy_identical: identical.iter().filter(|&&s| s).count(),
    })
}

/// Every scale's tokens of one generation per label, `[scale][B·pn²]`.
async fn tokens_of(
    model: &Model,
    labels: &[usize],
    params: &SamplingParams,
) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    generate(model, labels, params, None, |s| {
        out.push(s.tokens.to_vec());
        ControlFlow::Continue(())
    })
    .await?;
    Ok(out)
}

/// Conditional next-token logits `[B, L, V]` for the given token maps (teacher forcing).
fn teacher_forced(model: &Model, labels: &[usize], tokens: &[Vec<u32>]) -> Result<Tensor<3>> {
    let device = model.device();
    let b = labels.len();
    let per_scale: Vec<Tensor<2, Int>> = tokens
        .iter()
        .map(|t| {
            let values: Vec<i64> = t.iter().map(|&x| x as i64).collect();
            let l = values.len() / b;
            Tensor::from_data(TensorData::new(values, [b, l]), &device)
        })
        .collect();
    let x = model.vqvae.quantize.teacher_forcing_input(&per_scale);
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(labels.iter().map(|&c| c as i64).collect(), [b]),
        &device,
    );
    Ok(model.var.forward(labels, x))
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}
