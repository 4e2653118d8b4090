// y = x + (h + bias) * m[b, gate, :]: a transformer block's residual update after its
// attention and after its MLP, where h is the product of the output projection (proj, fc2)
// whose bias is added here when one is bound (has_bias 1), and the gate is one chunk of the
// class condition's modulation [B, K, C]. burn's ops take four dispatches (the bias, the
// chunk copied out, the product, the sum); this is one, reading the chunk in place. One
// invocation per element of [B, l, C].
// Bindings are read_write for the reason int8_matmul.wgsl gives.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // [B, l, C]
@group(0) @binding(1) var<storage, read_write> h: array<f32>;   // [B, l, C]
@group(0) @binding(2) var<storage, read_write> bias: array<f32>; // [C], or one unread value
@group(0) @binding(3) var<storage, read_write> m: array<f32>;   // [B, K, C]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // [B, l, C]

// n = B·l·C; lc = l·C; chunks_gate = K << 16 | gate.
struct Dims { n: u32, c: u32, lc: u32, chunks_gate: u32, has_bias: u32, unused0: u32, unused1: u32, unused2: u32 }
@group(0) @binding(5) var<uniform> dims: Dims;

@compute @workgroup_size({{ width }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let i = (wid.y * groups.x + wid.x) * {{ width }}u + lane;
    if (i >= dims.n) {
        return;
    }
    let batch = i / dims.lc;
    let chunk = batch * (dims.chunks_gate >> 16u) + (dims.chunks_gate & 0xffffu);
    let j = i % dims.c;
    var hi = h[i];
    if (dims.has_bias == 1u) {
        hi = hi + bias[j];
    }
    y[i] = x[i] + hi * m[chunk * dims.c + j];
}
