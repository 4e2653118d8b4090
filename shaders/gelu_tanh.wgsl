// GELU, tanh approximation (the reference's nn.GELU(approximate='tanh')):
// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), one invocation per element, with
// x = the product of fc1 plus its bias when one is bound (has_bias 1; bias[i % n_bias]).
// burn's ops take ten dispatches for that (the bias, the cube, four scalar steps, tanh, two
// products).
// tanh(u) is written as 1 - 2 / (exp(2u) + 1): exact at both tails (exp overflows to inf and
// gives 1, underflows to 0 and gives -1), where some WGSL implementations of tanh return NaN
// for large |u|; near 0 its absolute error (~1e-7) is far below what 1 + tanh(u) can show.
// Bindings are read_write for the reason int8_matmul.wgsl gives.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;  // [n_bias], or one unread value
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

struct Dims { n: u32, n_bias: u32, has_bias: u32, unused0: u32 }
@group(0) @binding(3) var<uniform> dims: Dims;

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
    var v = x[i];
    if (dims.has_bias == 1u) {
        v = v + bias[i % dims.n_bias];
    }
    let u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    y[i] = 0.5 * v * (1.0 + t);
}
