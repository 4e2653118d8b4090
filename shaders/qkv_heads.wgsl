// The attention's inputs from mat_qkv's output in one dispatch: adds the q and v biases,
// splits [B, l, 3, H, hd] into per-head q, k, v [B, H, l, hd], and (with the reference's
// attn_l2_norm) l2-normalises q and k over hd, q times its head's temperature
// exp(min(scale_mul, ln 100)). burn's ops take about twenty dispatches for this: the bias
// concatenated from three parts, the add, three strided copies, and two normalisations of
// five ops each plus the temperature's clamp, exp and product.
//
// One workgroup per (b, t, head), its invocations striding over hd; the two norms are
// workgroup sums in shared memory. Bindings are read_write for the reason int8_matmul.wgsl
// gives.

@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;      // [B, l, 3C]
@group(0) @binding(1) var<storage, read_write> q_bias: array<f32>;   // [C]
@group(0) @binding(2) var<storage, read_write> v_bias: array<f32>;   // [C]
@group(0) @binding(3) var<storage, read_write> scale_mul: array<f32>; // [H]
@group(0) @binding(4) var<storage, read_write> q: array<f32>;        // [B, H, l, hd]
@group(0) @binding(5) var<storage, read_write> k: array<f32>;        // [B, H, l, hd]
@group(0) @binding(6) var<storage, read_write> v: array<f32>;        // [B, H, l, hd]

// groups = B·l·H workgroups in all; l2_norm is 0 or 1.
struct Dims { l: u32, heads: u32, hd: u32, l2_norm: u32, groups: u32, unused0: u32, unused1: u32, unused2: u32 }
@group(0) @binding(7) var<uniform> dims: Dims;

// workgroup_sum and workgroup_reduce: shaders/workgroup_reduce.wgsl, prepended.

@compute @workgroup_size({{ width }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    // The whole workgroup leaves together, so the barriers below stay uniform.
    let g = wid.y * groups.x + wid.x;
    if (g >= dims.groups) {
        return;
    }
    let hd = dims.hd;
    let c = dims.heads * hd;
    let head = g % dims.heads;
    let token = g / dims.heads; // b·l + t
    let t = token % dims.l;
    let b = token / dims.l;
    let src = token * 3u * c + head * hd;
    let dst = ((b * dims.heads + head) * dims.l + t) * hd;
    var qq = 0.0;
    var kk = 0.0;
    for (var j = lane; j < hd; j = j + {{ width }}u) {
        let qj = qkv[src + j] + q_bias[head * hd + j];
        let kj = qkv[src + c + j];
        q[dst + j] = qj;
        k[dst + j] = kj;
        v[dst + j] = qkv[src + 2u * c + j] + v_bias[head * hd + j];
        qq = qq + qj * qj;
        kk = kk + kj * kj;
    }
    let q_norm = workgroup_sum(qq, lane);
    let k_norm = workgroup_sum(kk, lane);
    if (dims.l2_norm == 0u) {
        return;
    }
    // F.normalize: x / max(|x|, 1e-12). Each invocation rescales the values it wrote.
    let q_factor = exp(min(scale_mul[head], 4.605170185988092)) / max(sqrt(q_norm), 1e-12);
    let k_factor = 1.0 / max(sqrt(k_norm), 1e-12);
    for (var j = lane; j < hd; j = j + {{ width }}u) {
        q[dst + j] = q[dst + j] * q_factor;
        k[dst + j] = k[dst + j] * k_factor;
    }
}
