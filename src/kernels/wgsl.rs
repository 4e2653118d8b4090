//! What every fused WGSL kernel of ours shares: its source as a type (so CubeCL caches it
//! and the dispatch counter names it), the `Cube` tensors it reads, fresh outputs, and a
//! launch over storage buffers plus a uniform of up to four u32 pairs.

use core::marker::PhantomData;

use burn::backend::Cube;
use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::{KernelArguments, MetadataBindingInfo};
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Shape, Tensor};

/// WebGPU guarantees 65,535 workgroups per dimension.
pub const MAX_GROUPS_PER_DIM: usize = 65_535;

/// A shader in `shaders/`, templated with its workgroup size (`{{ width }}`).
pub trait Shader: Send + Sync + 'static {
    const SOURCE: &'static str;
    const WIDTH: u32;
    /// Whether it calls the workgroup reductions of `shaders/workgroup_reduce.wgsl`, which
    /// are then prepended (WGSL has no includes).
    const REDUCES: bool = false;
}

const WORKGROUP_REDUCE: &str = include_str!("../../shaders/workgroup_reduce.wgsl");

/// The kernel source of shader `S`. One type per shader: CubeCL keys its compile cache by
/// type, and the launch observer names a kernel by it.
struct Wgsl<S: Shader>(PhantomData<S>);

impl<S: Shader> KernelSource for Wgsl<S> {
    fn source(&self) -> SourceTemplate {
        let source = if S::REDUCES {
            format!("{WORKGROUP_REDUCE}\n{}", S::SOURCE)
        } else {
            S::SOURCE.to_string()
        };
        SourceTemplate::new(source).register("width", S::WIDTH.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(S::WIDTH)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// `t` as a contiguous `Cube` tensor, or `None` off the GPU (burn-flex, autodiff).
pub fn cube<const D: usize>(t: Tensor<D>) -> Option<CubeTensor> {
    let t = t.try_into_primitive::<Cube>().ok()?;
    Some(burn::backend::wgpu::into_contiguous(t))
}

/// A new f32 tensor of `shape` on `like`'s device, its contents undefined until written.
pub fn empty_f32(like: &CubeTensor, shape: &[usize]) -> CubeTensor {
    let client = like.client.clone();
    let numel: usize = shape.iter().product();
    CubeTensor::new_contiguous(
        client.clone(),
        like.device.clone(),
        Shape::from(shape.to_vec()),
        client.empty(numel * 4),
        DType::F32,
    )
}

/// An optional vector input as a shader binds it: the tensor and its length, or a
/// one-value placeholder and 0 (WGSL has no optional bindings, and WebGPU refuses one
/// buffer bound twice as writable storage). `None` when the tensor is not on the GPU.
pub fn optional(like: &CubeTensor, t: Option<&Tensor<1>>) -> Option<(CubeTensor, usize)> {
    match t {
        Some(t) => Some((cube(t.clone())?, t.dims()[0])),
        None => Some((empty_f32(like, &[1]), 0)),
    }
}

/// `groups` workgroups laid out within WebGPU's per-dimension limit: `(x, y)` with
/// `x·y ≥ groups`; a shader recovers its index as `wid.y · num_workgroups.x + wid.x`.
pub fn groups_2d(groups: usize) -> CubeCount {
    let x = groups.clamp(1, MAX_GROUPS_PER_DIM);
    CubeCount::Static(x as u32, groups.div_ceil(x) as u32, 1)
}

/// Launches shader `S` over `count` workgroups of `S::WIDTH` invocations with `buffers` bound
/// in order (inputs, then outputs) and `info` as its uniform: each u64 is two u32 fields,
/// low half first.
pub fn launch<S: Shader>(count: CubeCount, buffers: &[&CubeTensor], info: Vec<u64>) {
    let client = buffers[0].client.clone();
    let mut args = KernelArguments::new();
    for b in buffers {
        args = args.with_buffer(b.handle.clone().binding());
    }
    client.launch(
        Box::new(SourceKernel::new(
            Wgsl::<S>(PhantomData),
            CubeDim::new_1d(S::WIDTH),
        )),
        count,
        args.with_info(MetadataBindingInfo::custom(info)),
    );
}
