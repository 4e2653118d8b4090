// softmax(scale * s) over the last axis of the attention scores [R, L], in one dispatch where
// burn's ops take five or six (the scale, the row maximum, the difference, exp, the row sum,
// the division). One workgroup per row; the maximum and the sum are workgroup reductions in
// shared memory. Bindings are read_write for the reason int8_matmul.wgsl gives.

@group(0) @binding(0) var<storage, read_write> s: array<f32>;   // [R, L]
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // [R, L]

// scale is an f32's bits.
struct Dims { rows: u32, len: u32, scale: u32, unused0: u32 }
@group(0) @binding(2) var<uniform> dims: Dims;

// workgroup_sum and workgroup_reduce: shaders/workgroup_reduce.wgsl, prepended.

@compute @workgroup_size({{ width }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = wid.y * groups.x + wid.x;
    if (row >= dims.rows) {
        return;
    }
    let scale = bitcast<f32>(dims.scale);
    let base = row * dims.len;
    // -FLT_MAX by its bits: Tint refuses a decimal literal past the f32 range.
    var top = bitcast<f32>(0xff7fffffu);
    for (var j = lane; j < dims.len; j = j + {{ width }}u) {
        top = max(top, s[base + j] * scale);
    }
    top = workgroup_reduce(top, lane, true);
    var sum = 0.0;
    for (var j = lane; j < dims.len; j = j + {{ width }}u) {
        let e = exp(s[base + j] * scale - top);
        y[base + j] = e;
        sum = sum + e;
    }
    let inv = 1.0 / workgroup_reduce(sum, lane, false);
    for (var j = lane; j < dims.len; j = j + {{ width }}u) {
        y[base + j] = y[base + j] * inv;
    }
}
