// AdaLN in one dispatch: y[r, :] = ln(x[r, :]) * (1 + m[b, scale, :]) + m[b, shift, :], where
// ln is LayerNorm over the row without affine parameters (biased variance, eps 1e-6, as the
// reference's nn.LayerNorm(elementwise_affine=False)) and b = r / rows_per_batch. Plain burn
// ops take ten dispatches for this (two reductions, the centring, the division, the square
// root, the modulation), each a full pass over x.
//
// One workgroup per row: each invocation strides over the row's columns, the workgroup sums
// in shared memory, twice (the mean, then the squared deviations from it: the two-pass
// variance burn's var_mean_bias computes, not E[x²] - E[x]², which cancels badly when the mean
// is large against the spread). m is the class condition's modulation [B, K, C] as the model
// holds it (K = 6 for a block, 2 for the head), read in place: no chunk is copied out.
// Bindings are read_write for the reason int8_matmul.wgsl gives.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // [R, C]
@group(0) @binding(1) var<storage, read_write> m: array<f32>;   // [B, K, C]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // [R, C]

struct Dims { c: u32, rows_per_batch: u32, chunks: u32, scale_shift: u32 }
@group(0) @binding(3) var<uniform> dims: Dims;

// workgroup_sum and workgroup_reduce: shaders/workgroup_reduce.wgsl, prepended.

@compute @workgroup_size({{ width }}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = dims.c;
    let row = wid.x;
    let base = row * c;
    var sum = 0.0;
    for (var j = lane; j < c; j = j + {{ width }}u) {
        sum = sum + x[base + j];
    }
    let mean = workgroup_sum(sum, lane) / f32(c);
    var squares = 0.0;
    for (var j = lane; j < c; j = j + {{ width }}u) {
        let d = x[base + j] - mean;
        squares = squares + d * d;
    }
    let inv = 1.0 / sqrt(workgroup_sum(squares, lane) / f32(c) + 1e-6);
    let batch = row / dims.rows_per_batch;
    let scale = (batch * dims.chunks + (dims.scale_shift & 0xffffu)) * c;
    let shift = (batch * dims.chunks + (dims.scale_shift >> 16u)) * c;
    for (var j = lane; j < c; j = j + {{ width }}u) {
        y[base + j] = (x[base + j] - mean) * inv * (1.0 + m[scale + j]) + m[shift + j];
    }
}
