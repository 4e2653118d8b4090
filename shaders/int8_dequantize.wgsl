// w[K, N] = codes[K, N] · scales[N] in f32, from int8 codes packed as the int8 matmul reads
// them (word (kb, n) holds W[4kb + j, n] in byte j). For the larger scales of VAR inference
// (M above the direct kernel's range) one layer's weight is expanded into a transient f32
// matrix and multiplied by burn's tiled matmul: the int8 model still keeps only int8 weights
// in GPU memory, and the expansion costs one pass over the weight per matmul, which a matmul
// of that many rows outweighs.
//
// One invocation per word: it writes 4 rows of one column, and neighbouring invocations write
// neighbouring columns (coalesced). Bindings are read_write for the reason the matmul gives.

@group(0) @binding(0) var<storage, read_write> codes: array<u32>;       // [K/4, N]
@group(0) @binding(1) var<storage, read_write> scales: array<f32>;      // [N]
@group(0) @binding(2) var<storage, read_write> w: array<f32>;           // [K, N]

struct Dims { k4: u32, n: u32, unused0: u32, unused1: u32 }
@group(0) @binding(3) var<uniform> dims: Dims;

@compute @workgroup_size({{ width }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let kb = gid.y;
    if (col >= dims.n || kb >= dims.k4) {
        return;
    }
    let word = bitcast<i32>(codes[kb * dims.n + col]);
    let s = scales[col];
    let base = 4u * kb * dims.n + col;
    // extractBits on i32 sign-extends: the int8 codes as exact small floats.
    w[base] = f32(extractBits(word, 0u, 8u)) * s;
    w[base + dims.n] = f32(extractBits(word, 8u, 8u)) * s;
    w[base + 2u * dims.n] = f32(extractBits(word, 16u, 8u)) * s;
    w[base + 3u * dims.n] = f32(extractBits(word, 24u, 8u)) * s;
}
