//! GPU work counted, not estimated: every kernel dispatch one image issues, by scale and by
//! kernel, through CubeCL's launch observer (`cubecl::logging::LaunchObserver`, called on
//! the issuing thread for every launch that reaches a CubeCL client: burn's own kernels, its
//! fused ones and our WGSL alike). Timing is not asked for, so counting costs one lock and
//! one map update per launch and changes nothing about the order kernels run in.
//!
//! A dispatch is attributed to the phase that was current when it was issued. The generation
//! loop reads every scale's logits back to the CPU, which makes burn's fusion flush what that
//! scale queued, so a scale's count is the work of that scale; what a scale queues after its
//! read (its tokens' embedding, the residual accumulation) is issued, and counted, in the next.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::cubecl::config::{TypeNameFormatLevel, type_name_format};
use burn::cubecl::dry_run::DryRun;
use burn::cubecl::logging::{LaunchObservation, LaunchObserver};
use serde::Serialize;

use crate::config::SamplingParams;
use crate::error::Result;
use crate::generate::Generation;
use crate::model::Model;
use crate::readback::read_f32;

/// The dispatches of one image.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DispatchCounts {
    /// Issued during each scale's step, scale 0 first.
    pub per_scale: Vec<u64>,
    /// Issued by the final VQ-VAE decode (0 when it was not run).
    pub decode: u64,
    /// Everything the image issued: the scales and the decode.
    pub per_image: u64,
    /// Per kernel (named as CubeCL names it, shortened), most dispatched first.
    pub by_kernel: Vec<KernelDispatches>,
}

/// How often one kernel was dispatched for one image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelDispatches {
    pub kernel: String,
    pub count: u64,
}

/// The observer: counts per (phase, kernel name).
#[derive(Default)]
struct Counter {
    phase: AtomicUsize,
    counts: Mutex<BTreeMap<(usize, &'static str), u64>>,
}

impl LaunchObserver for Counter {
    fn launched(&self, kernel: &'static str) {
        let phase = self.phase.load(Ordering::Relaxed);
        // A poisoned lock means a counting thread panicked; the counts are still counts.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((phase, kernel)).or_default() += 1;
    }
}

/// Counts the dispatches issued while it lives, split into numbered phases (the scales, then
/// the decode). There is one observer slot per process: a second `Counting` replaces the
/// first until it is dropped.
pub struct Counting {
    counter: Arc<Counter>,
    _observation: LaunchObservation,
}

impl Counting {
    /// Starts counting, in phase 0.
    pub fn start() -> Self {
        let counter = Arc::new(Counter::default());
        let observation = LaunchObservation::new(counter.clone());
        Self {
            counter,
            _observation: observation,
        }
    }

    /// Dispatches from now on belong to `phase`.
    pub fn enter(&self, phase: usize) {
        self.counter.phase.store(phase, Ordering::Relaxed);
    }

    /// Stops counting: phases `0..scales` are the scales, phase `scales` the decode.
    pub fn finish(self, scales: usize) -> DispatchCounts {
        let Self {
            counter,
            _observation,
        } = self;
        drop(_observation);
        let counts = counter.counts.lock().unwrap_or_else(|e| e.into_inner());
        summarize(&counts, scales)
    }
}

/// Counts per (phase, kernel) as one image's report: phases `0..scales` are the scales, the
/// rest the decode; kernel names shortened as CubeCL's logger shortens them, then merged.
fn summarize(counts: &BTreeMap<(usize, &'static str), u64>, scales: usize) -> DispatchCounts {
    let mut per_scale = vec![0; scales];
    let mut decode = 0;
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (&(phase, kernel), &n) in counts {
        match per_scale.get_mut(phase) {
            Some(scale) => *scale += n,
            None => decode += n,
        }
        *by_name
            .entry(type_name_format(kernel, TypeNameFormatLevel::Balanced))
            .or_default() += n;
    }
    let mut by_kernel: Vec<KernelDispatches> = by_name
        .into_iter()
        .map(|(kernel, count)| KernelDispatches { kernel, count })
        .collect();
    by_kernel.sort_by(|a, b| b.count.cmp(&a.count).then(a.kernel.cmp(&b.kernel)));
    DispatchCounts {
        per_image: per_scale.iter().sum::<u64>() + decode,
        per_scale,
        decode,
        by_kernel,
    }
}

/// The dispatches of one image of class 0 with `params` (and its decode, if `decode`), without
/// running them: the image and a warm-up before it go through CubeCL's dry run, which
/// compiles and reports every launch and then drops it. Counts are exact because what VAR
/// launches depends on shapes alone (every scale's token count is fixed), never on the
/// values read back, which under a dry run are meaningless. On a software adapter this takes
/// seconds where a real VAR-d16 image takes minutes; on the CPU backend it counts nothing.
pub async fn count_dry(
    model: &Model,
    params: &SamplingParams,
    decode: bool,
) -> Result<DispatchCounts> {
    let k = model.config.num_scales();
    let _dry = DryRun::new();
    let mut counts = None;
    for counted in [false, true] {
        let counting = counted.then(Counting::start);
        let mut generation = Generation::new(model, &[0], params, None).await?;
        let mut done = 0;
        loop {
            if let Some(counting) = &counting {
                counting.enter(done);
            }
            if generation.step().await?.is_none() {
                break;
            }
            done += 1;
        }
        if decode {
            read_f32(generation.image()).await?;
        }
        counts = counting.map(|c| c.finish(k));
    }
    Ok(counts.expect("the second image is counted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_split_the_counts_and_names_are_merged() {
        // The observer called as CubeCL calls it, but not installed: other tests of this
        // binary may launch kernels, and the slot is process-wide (tests/kernels.rs counts
        // real launches). Two kernels in scale 0, one in scale 1, one in the decode (phase 2
        // of a two-scale model); the two spellings of Matmul are one kernel.
        let counter = Counter::default();
        counter.launched("a::Matmul<f32>");
        counter.launched("b::Add");
        counter.phase.store(1, Ordering::Relaxed);
        counter.launched("x::a::Matmul<f32>");
        counter.phase.store(2, Ordering::Relaxed);
        counter.launched("b::Add");
        let counts = summarize(&counter.counts.lock().unwrap(), 2);
        assert_eq!(counts.per_scale, vec![2, 1]);
        assert_eq!(counts.decode, 1);
        assert_eq!(counts.per_image, 4);
        assert_eq!(counts.by_kernel.len(), 2);
        assert!(counts.by_kernel.iter().all(|k| k.count == 2), "{counts:?}");
    }
}
