// y[M, N] = x[M, K] · (codes[K, N] · scales[N]) + bias[N], with int8 weights that stay packed
// on the GPU: word (kb, n) of `codes` holds W[4kb + j, n] in byte j (little-endian, two's
// complement), which is 4 consecutive input weights of output channel n, exactly as a PyTorch
// `[out, in]` int8 row stores them. K is a multiple of 4.
//
// VAR's inference matmuls are skinny (M = the tokens of one scale x 2 for CFG: 2 .. 512 rows)
// and weight-bound, so each invocation owns one output column and ROWS consecutive rows:
// every packed word is read and decoded once per ROWS rows, and neighbouring invocations read
// neighbouring words (coalesced). The per-channel scale factors out of the k-sum and is
// applied once at the end. Past a dozen or two rows the weight is re-decoded too often to
// beat a tiled f32 matmul, so the host sends larger M through `int8_dequantize.wgsl` and
// burn's matmul instead (`DIRECT_ROWS_MAX` in src/kernels.rs).
//
// Every storage binding is read_write although only `y` is written: CubeCL sub-allocates
// tensors from shared pages, so inputs and output can be ranges of one wgpu buffer, and wgpu
// refuses a buffer bound read-only and read-write in the same dispatch.

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;     // [M, K/4]
@group(0) @binding(1) var<storage, read_write> codes: array<u32>;       // [K/4, N]
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;      // [N]
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;        // [N] (zeros when none)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;     // [M, N]

struct Dims { m: u32, k4: u32, n: u32, unused: u32 }
@group(0) @binding(5) var<uniform> dims: Dims;

const ROWS: u32 = {{ rows }}u;

@compute @workgroup_size({{ width }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row0 = gid.y * ROWS;
    if (col >= dims.n || row0 >= dims.m) {
        return;
    }
    let rows = min(ROWS, dims.m - row0);
    var acc: array<f32, ROWS>;
    for (var kb = 0u; kb < dims.k4; kb++) {
        let word = bitcast<i32>(codes[kb * dims.n + col]);
        // extractBits on i32 sign-extends: the int8 codes as exact small floats.
        let w = vec4<f32>(
            f32(extractBits(word, 0u, 8u)),
            f32(extractBits(word, 8u, 8u)),
            f32(extractBits(word, 16u, 8u)),
            f32(extractBits(word, 24u, 8u)),
        );
        for (var r = 0u; r < rows; r++) {
            acc[r] += dot(x[(row0 + r) * dims.k4 + kb], w);
        }
    }
    let s = scales[col];
    let b = bias[col];
    for (var r = 0u; r < rows; r++) {
        y[(row0 + r) * dims.n + col] = acc[r] * s + b;
    }
}
