//! Token sampling: classifier-free guidance, temperature, top-k, top-p, multinomial draws and
//! the "more smooth" Gumbel soft embedding of the reference (`models/helpers.py`).
//!
//! Sampling runs on the CPU over logits read back once per scale. It is plain f64 arithmetic
//! with a pure-Rust `exp`/`ln` (`libm`) and a ChaCha8 stream, so the same seed gives the same
//! tokens natively and in wasm (given the same logits).

use crate::rng::Rng;

/// Guidance at scale `si`: `t = cfg · si / (K − 1)` (scale 0 is unguided).
pub fn cfg_strength(cfg: f32, si: usize, num_scales: usize) -> f32 {
    cfg * si as f32 / (num_scales - 1) as f32
}

/// `(1 + t)·cond − t·uncond`, in place over `cond`.
pub fn cfg_mix(cond: &mut [f32], uncond: &[f32], t: f32) {
    for (c, u) in cond.iter_mut().zip(uncond) {
        *c = (1.0 + t) * *c - t * u;
    }
}

/// Temperature of the Gumbel soft embedding at scale `si` (reference `more_smooth`).
pub fn smooth_tau(si: usize, num_scales: usize) -> f64 {
    let ratio = si as f64 / (num_scales - 1) as f64;
    (0.27 * (1.0 - 0.95 * ratio)).max(0.005)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut p: Vec<f64> = logits
        .iter()
        .map(|&x| {
            if x == f32::NEG_INFINITY {
                0.0
            } else {
                libm::exp(x as f64 - max)
            }
        })
        .collect();
    let sum: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    p
}

/// Masks (to −∞) every logit outside the top-k (ties with the k-th value kept) and then
/// outside the top-p nucleus, as `sample_with_top_k_top_p_` does.
pub fn filter_top_k_top_p(logits: &mut [f32], top_k: usize, top_p: f32) {
    let v = logits.len();
    if top_k > 0 && top_k < v {
        let mut sorted = logits.to_vec();
        let (_, kth, _) = sorted.select_nth_unstable_by(top_k - 1, |a, b| b.total_cmp(a));
        let threshold = *kth;
        logits
            .iter_mut()
            .filter(|x| **x < threshold)
            .for_each(|x| *x = f32::NEG_INFINITY);
    }
    if top_p < 1.0 {
        let probs = softmax(logits);
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(a.cmp(&b)));
        // Ascending: drop the low tail whose cumulative mass stays within 1 − top_p, but never
        // the most likely token.
        let mut cum = 0.0;
        for &i in &order[..v - 1] {
            cum += probs[i];
            if cum <= 1.0 - top_p as f64 {
                logits[i] = f32::NEG_INFINITY;
            } else {
                break;
            }
        }
    }
}

/// One multinomial draw from `softmax(logits)`.
pub fn sample_index(logits: &[f32], rng: &mut Rng) -> usize {
    let probs = softmax(logits);
    let u = rng.uniform();
    let mut cum = 0.0;
    let mut last_nonzero = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            cum += p;
            last_nonzero = i;
            if u < cum {
                return i;
            }
        }
    }
    last_nonzero
}

/// Gumbel-softmax weights `softmax((logits·(1 + ratio) + g) / tau)` over the (filtered)
/// logits; the code vector is these weights times the codebook.
pub fn gumbel_soft_weights(logits: &[f32], ratio: f64, tau: f64, rng: &mut Rng) -> Vec<f32> {
    let scaled: Vec<f32> = logits
        .iter()
        .map(|&x| {
            let g = rng.gumbel();
            ((x as f64 * (1.0 + ratio) + g) / tau) as f32
        })
        .collect();
    softmax(&scaled).into_iter().map(|p| p as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_ties() {
        let mut l = vec![1.0, 3.0, 3.0, 2.0, 0.0];
        filter_top_k_top_p(&mut l, 1, 1.0);
        assert_eq!(
            l,
            vec![
                f32::NEG_INFINITY,
                3.0,
                3.0,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY
            ]
        );
    }

    #[test]
    fn top_k_larger_than_vocab_keeps_all() {
        let mut l = vec![1.0, 2.0];
        filter_top_k_top_p(&mut l, 900, 1.0);
        assert_eq!(l, vec![1.0, 2.0]);
    }

    #[test]
    fn top_p_keeps_the_nucleus_and_always_the_best() {
        // probabilities 0.1, 0.2, 0.7 (logits = ln p)
        let mut l: Vec<f32> = [0.1f32, 0.2, 0.7].iter().map(|p| p.ln()).collect();
        filter_top_k_top_p(&mut l, 0, 0.75);
        // ascending cumsum: 0.1 (<= 0.25, drop), 0.3 (> 0.25, keep)
        assert_eq!(l[0], f32::NEG_INFINITY);
        assert!(l[1].is_finite() && l[2].is_finite());
        let mut l: Vec<f32> = [0.1f32, 0.2, 0.7].iter().map(|p| p.ln()).collect();
        filter_top_k_top_p(&mut l, 0, 1e-6);
        assert_eq!(l.iter().filter(|x| x.is_finite()).count(), 1);
        assert!(l[2].is_finite());
    }

    #[test]
    fn greedy_sampling_is_deterministic() {
        let mut rng = Rng::new(7);
        let mut l = vec![0.5, 2.0, 1.0];
        filter_top_k_top_p(&mut l, 1, 1.0);
        for _ in 0..100 {
            assert_eq!(sample_index(&l, &mut rng), 1);
        }
    }

    #[test]
    fn multinomial_follows_probabilities() {
        let mut rng = Rng::new(1);
        let l: Vec<f32> = [0.25f32, 0.75].iter().map(|p| p.ln()).collect();
        let n = 20_000;
        let ones = (0..n).filter(|_| sample_index(&l, &mut rng) == 1).count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<f64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.uniform()).collect()
        };
        let b: Vec<f64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.uniform()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, {
            let mut r = Rng::new(43);
            (0..5).map(|_| r.uniform()).collect::<Vec<_>>()
        });
    }

    #[test]
    fn gumbel_weights_sum_to_one_and_respect_masks() {
        let mut rng = Rng::new(3);
        let w = gumbel_soft_weights(&[0.0, f32::NEG_INFINITY, 1.0], 0.5, 0.1, &mut rng);
        assert_eq!(w[1], 0.0);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn cfg_schedule() {
        assert_eq!(cfg_strength(4.0, 0, 10), 0.0);
        assert_eq!(cfg_strength(4.0, 9, 10), 4.0);
        let mut c = vec![1.0, 2.0];
        cfg_mix(&mut c, &[0.0, 2.0], 1.5);
        assert_eq!(c, vec![2.5, 2.0]);
    }
}
