//! The KV-cached, one-scale-at-a-time forward used for generation computes exactly what the
//! teacher-forced full-sequence forward with the block-causal mask computes.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use var_web::readback::read_f32;
use var_web::weights::safetensors::SafetensorsSource;

#[test]
fn cached_per_scale_forward_equals_masked_full_forward() {
    let model = common::fixture_model("mini");
    let device = model.device();
    let golden = std::fs::read(common::fixture("golden_mini.safetensors")).unwrap();
    let g = SafetensorsSource::new(&golden, "golden").unwrap();
    let (shape, x) = g.read_any("forward.x").unwrap(); // [B, L-1, Cvae]
    let b = shape[0];
    let x = Tensor::<3>::from_data(TensorData::new(x, shape.clone()), &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 9], [b]), &device);

    let full = model.var.forward(labels.clone(), x.clone());
    let full = pollster::block_on(read_f32(full)).unwrap();

    let var = &model.var;
    let cond = var.condition(labels);
    let lvl_pos = var.level_positions();
    let mut caches = var.new_caches(b, &device);
    let offsets = var.scale_offsets();
    let mut parts = Vec::new();
    for si in 0..var.patch_nums().len() {
        let input = if si == 0 {
            var.first_scale_input(&cond, &lvl_pos)
        } else {
            let (start, len) = (offsets[si] - 1, offsets[si + 1] - offsets[si]);
            var.scale_input(si, x.clone().narrow(1, start, len), &lvl_pos)
        };
        parts.push(var.forward_scale(input, &cond, &mut caches));
    }
    assert_eq!(caches[0].len(), offsets[offsets.len() - 1]);
    let cached = pollster::block_on(read_f32(Tensor::cat(parts, 1))).unwrap();

    assert_eq!(full.len(), cached.len());
    let worst = full
        .iter()
        .zip(&cached)
        .map(|(a, c)| (a - c).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "cached vs masked logits differ by {worst}");
}
