// Workgroup reductions in shared memory, prepended to every row-wise shader of ours
// (kernels/wgsl.rs, `Shader::REDUCES`): each workgroup of {{ width }} invocations owns one
// row, and every invocation gets the result. Call them from uniform control flow: they
// hold barriers.

var<workgroup> partial: array<f32, {{ width }}>;

// The workgroup's sum (take_max false) or maximum (true) of `v`.
fn workgroup_reduce(v: f32, lane: u32, take_max: bool) -> f32 {
    partial[lane] = v;
    workgroupBarrier();
    for (var stride = {{ width }}u / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            let other = partial[lane + stride];
            partial[lane] = select(partial[lane] + other, max(partial[lane], other), take_max);
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Nobody may overwrite partial[0] for the next reduction before everyone has read it.
    workgroupBarrier();
    return total;
}

fn workgroup_sum(v: f32, lane: u32) -> f32 {
    return workgroup_reduce(v, lane, false);
}
