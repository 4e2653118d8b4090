//! int8 on the GPU (WGSL in `shaders/`), launched through burn's custom-kernel path, each
//! kernel with a plain burn-ops reference that is also the CPU (burn-flex) path.
//!
//! [`Int8Linear`]: a Linear layer whose weights stay int8 on the GPU (packed 4 per u32) and
//! are dequantized inside the matmul (`shaders/int8_matmul.wgsl`) for the first scales' few
//! rows, or expanded to f32 for one matmul at a time (`shaders/int8_dequantize.wgsl`) for the
//! larger ones, so an int8 model never holds more than one layer's f32 weight in GPU memory.

use burn::backend::Cube;
use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::{KernelArguments, MetadataBindingInfo};
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, Int, Shape, Tensor, TensorData};

use crate::error::{Result, VarError};

/// Output columns per workgroup of the int8 matmul.
const WIDTH: u32 = 64;
/// Rows each invocation accumulates (every decoded weight is reused this many times).
const ROWS: u32 = 4;
/// The most rows the direct int8 kernel takes. It re-decodes the weight for every ROWS rows,
/// so it wins while a matmul is weight-bound (VAR's first scales) and loses to burn's tiled
/// f32 matmul beyond a dozen or two rows (`var bench --kernels` on lavapipe: 0.15x the f32
/// time at M = 2, 0.5x at M = 8, 1.0-1.2x at M = 18, 2-7x from M = 32); larger inputs expand
/// the weight to f32 for the one matmul instead (`shaders/int8_dequantize.wgsl`), within
/// 0.8-1.5x of the f32 model's matmul.
pub const DIRECT_ROWS_MAX: usize = 16;

/// An int8 weight matrix as the kernel reads it: packed 4 codes per word, one f32 scale per
/// output channel. Built straight from a file's codes (a model loader stages these on the GPU
/// as each shard arrives), then wrapped in an [`Int8Linear`] with its bias.
#[derive(Clone, Debug)]
pub struct Int8Weight {
    /// `[K/4, N]` words; byte j of word (kb, n) is W[n, 4kb + j] (i32 bits of u32 words).
    codes: Tensor<2, Int>,
    /// `[N]`.
    scales: Tensor<1>,
    d_in: usize,
    d_out: usize,
}

impl Int8Weight {
    /// From PyTorch-layout int8 codes `[d_out, d_in]` (row-major) and per-row scales. `d_in`
    /// must be a multiple of 4.
    pub fn new(
        codes: &[i8],
        scales: Vec<f32>,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Self> {
        if !d_in.is_multiple_of(4) || codes.len() != d_in * d_out || scales.len() != d_out {
            return Err(VarError::InvalidArgument(format!(
                "an int8 layer needs [{d_out}, {d_in}] codes with {d_in} a multiple of 4 and {d_out} scales"
            )));
        }
        let k4 = d_in / 4;
        let mut words = vec![0i32; k4 * d_out];
        for (n, row) in codes.chunks_exact(d_in).enumerate() {
            for (kb, four) in row.chunks_exact(4).enumerate() {
                words[kb * d_out + n] = i32::from_le_bytes([
                    four[0] as u8,
                    four[1] as u8,
                    four[2] as u8,
                    four[3] as u8,
                ]);
            }
        }
        Ok(Self {
            codes: Tensor::from_data(TensorData::new(words, [k4, d_out]), device),
            scales: Tensor::from_data(TensorData::new(scales, [d_out]), device),
            d_in,
            d_out,
        })
    }

    /// `[d_out, d_in]`, the layout the file stores.
    pub fn shape(&self) -> [usize; 2] {
        [self.d_out, self.d_in]
    }

    /// The f32 matrix `[d_in, d_out]` (the layout a matmul from the right wants), unpacked and
    /// scaled with plain burn ops: the kernel's reference, and how an int8 tensor that is not
    /// a Linear layer's weight (an embedding table) is read on the device.
    pub fn dequantized(&self) -> Tensor<2> {
        let [k4, n] = self.codes.dims();
        // Byte j of each word, sign-extended: (w << (24 − 8j)) >> 24 on i32.
        let bytes: Vec<Tensor<3, Int>> = (0..4)
            .map(|j| {
                let shifted = self.codes.clone().bitwise_left_shift_scalar(24 - 8 * j);
                shifted.bitwise_right_shift_scalar(24).unsqueeze_dim::<3>(1)
            })
            .collect();
        let w = Tensor::cat(bytes, 1).reshape([k4 * 4, n]).float();
        w * self.scales.clone().unsqueeze_dim::<2>(0)
    }
}

/// A Linear layer with int8 weights, one f32 scale per output channel.
#[derive(Clone, Debug)]
pub struct Int8Linear {
    weight: Int8Weight,
    /// `[N]` (zeros when the layer has none: the kernel always adds it).
    bias: Tensor<1>,
}

impl Int8Linear {
    /// From PyTorch-layout int8 codes `[d_out, d_in]` (row-major), per-row scales and an
    /// optional bias. `d_in` must be a multiple of 4.
    pub fn new(
        codes: &[i8],
        scales: Vec<f32>,
        bias: Option<Vec<f32>>,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Self> {
        let weight = Int8Weight::new(codes, scales, d_in, d_out, device)?;
        let bias = bias.map(|b| Tensor::<1>::from_data(TensorData::new(b, [d_out]), device));
        Self::from_weight(weight, bias)
    }

    /// From a packed weight and an optional `[d_out]` bias on the same device.
    pub fn from_weight(weight: Int8Weight, bias: Option<Tensor<1>>) -> Result<Self> {
        let d_out = weight.d_out;
        let bias = match bias {
            Some(b) if b.dims() != [d_out] => {
                return Err(VarError::InvalidArgument(format!(
                    "an int8 layer with {d_out} outputs needs a [{d_out}] bias, not {:?}",
                    b.dims()
                )));
            }
            Some(b) => b,
            None => Tensor::zeros([d_out], &weight.scales.device()),
        };
        Ok(Self { weight, bias })
    }

    pub fn d_in(&self) -> usize {
        self.weight.d_in
    }

    pub fn d_out(&self) -> usize {
        self.weight.d_out
    }

    /// `x [M, K] → [M, N]`: the WGSL kernel on a GPU device, [`Self::forward_reference`]
    /// elsewhere.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self.forward_gpu(x.clone()) {
            Some(y) => y,
            None => self.forward_reference(x),
        }
    }

    /// Above [`DIRECT_ROWS_MAX`] rows on a GPU: the product with the expanded weight and the
    /// bias still to be added, for a caller whose next kernel adds it. Otherwise the whole
    /// layer (the direct kernel adds the bias inside) and `None`.
    pub fn forward_unbiased(&self, x: Tensor<2>) -> (Tensor<2>, Option<Tensor<1>>) {
        if x.dims()[0] > DIRECT_ROWS_MAX
            && let Some(codes) = self.weight.codes.clone().try_into_primitive::<Cube>().ok()
            && let Ok(scales) = self.weight.scales.clone().try_into_primitive::<Cube>()
            && super::on_gpu(&x)
        {
            let w = Tensor::<2>::from_primitive::<Cube>(launch_int8_dequantize(codes, scales));
            return (x.matmul(w), Some(self.bias.clone()));
        }
        (self.forward(x), None)
    }

    /// The weight as an f32 `[d_in, d_out]` matrix (what an f32 model of the same weights
    /// holds).
    pub fn weight_dequantized(&self) -> Tensor<2> {
        self.weight.dequantized()
    }

    /// Our WGSL kernels, or `None` when the tensors are not on a wgpu/WebGPU device: the
    /// direct int8 matmul up to [`DIRECT_ROWS_MAX`] rows, else the weight expanded to f32 on
    /// the device and burn's matmul.
    pub fn forward_gpu(&self, x: Tensor<2>) -> Option<Tensor<2>> {
        let cube = |t: Tensor<2, Int>| t.try_into_primitive::<Cube>().ok();
        let codes = cube(self.weight.codes.clone())?;
        let scales = self
            .weight
            .scales
            .clone()
            .try_into_primitive::<Cube>()
            .ok()?;
        if x.dims()[0] > DIRECT_ROWS_MAX {
            let w = Tensor::<2>::from_primitive::<Cube>(launch_int8_dequantize(codes, scales));
            return Some(x.matmul(w) + self.bias.clone().unsqueeze_dim::<2>(0));
        }
        let x = x.try_into_primitive::<Cube>().ok()?;
        let bias = self.bias.clone().try_into_primitive::<Cube>().ok()?;
        Some(Tensor::from_primitive::<Cube>(launch_int8_matmul(
            x, codes, scales, bias,
        )))
    }

    /// The same product with plain burn ops: unpack, dequantize, matmul (the CPU path, and
    /// what the kernel is tested against).
    pub fn forward_reference(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.dequantized()) + self.bias.clone().unsqueeze_dim::<2>(0)
    }
}

struct Int8MatmulSource;

impl KernelSource for Int8MatmulSource {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(include_str!("../../shaders/int8_matmul.wgsl"))
            .register("width", WIDTH.to_string())
            .register("rows", ROWS.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((WIDTH, ROWS))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

struct Int8DequantizeSource;

impl KernelSource for Int8DequantizeSource {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(include_str!("../../shaders/int8_dequantize.wgsl"))
            .register("width", WIDTH.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(WIDTH)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// `[K/4, N]` packed codes and `[N]` scales → the f32 `[K, N]` weight.
fn launch_int8_dequantize(codes: CubeTensor, scales: CubeTensor) -> CubeTensor {
    use burn::backend::wgpu::into_contiguous;
    let (codes, scales) = (into_contiguous(codes), into_contiguous(scales));
    let [k4, n] = [codes.meta.shape()[0], codes.meta.shape()[1]];
    let client = codes.client.clone();
    let out = CubeTensor::new_contiguous(
        client.clone(),
        codes.device.clone(),
        Shape::new([4 * k4, n]),
        client.empty(4 * k4 * n * 4),
        DType::F32,
    );
    let dims = MetadataBindingInfo::custom(vec![k4 as u64 | (n as u64) << 32, 0]);
    let count = CubeCount::Static((n as u32).div_ceil(WIDTH), k4 as u32, 1);
    client.launch(
        Box::new(SourceKernel::new(
            Int8DequantizeSource,
            CubeDim::new_1d(WIDTH),
        )),
        count,
        KernelArguments::new()
            .with_buffer(codes.handle.clone().binding())
            .with_buffer(scales.handle.clone().binding())
            .with_buffer(out.handle.clone().binding())
            .with_info(dims),
    );
    out
}

fn launch_int8_matmul(
    x: CubeTensor,
    codes: CubeTensor,
    scales: CubeTensor,
    bias: CubeTensor,
) -> CubeTensor {
    use burn::backend::wgpu::into_contiguous;
    let (x, codes, scales, bias) = (
        into_contiguous(x),
        into_contiguous(codes),
        into_contiguous(scales),
        into_contiguous(bias),
    );
    let (m, k) = (x.meta.shape()[0], x.meta.shape()[1]);
    let [k4, n] = [codes.meta.shape()[0], codes.meta.shape()[1]];
    debug_assert_eq!(k, k4 * 4);
    let client = x.client.clone();
    let out = CubeTensor::new_contiguous(
        client.clone(),
        x.device.clone(),
        Shape::new([m, n]),
        client.empty(m * n * 4),
        DType::F32,
    );
    let dims = MetadataBindingInfo::custom(vec![m as u64 | (k4 as u64) << 32, n as u64]);
    let count = CubeCount::Static((n as u32).div_ceil(WIDTH), (m as u32).div_ceil(ROWS), 1);
    let cube_dim = CubeDim::new_1d(WIDTH);
    client.launch(
        Box::new(SourceKernel::new(Int8MatmulSource, cube_dim)),
        count,
        KernelArguments::new()
            .with_buffer(x.handle.clone().binding())
            .with_buffer(codes.handle.clone().binding())
            .with_buffer(scales.handle.clone().binding())
            .with_buffer(bias.handle.clone().binding())
            .with_buffer(out.handle.clone().binding())
            .with_info(dims),
    );
    out
}

/// VAR inference shapes: M = tokens of a scale x 2 (CFG), K and N from the shipped model
/// (128, 512) and d16 (1024, 3072, 4096); odd sizes exercise the edges, and M on both sides
/// of [`DIRECT_ROWS_MAX`] both paths.
pub const INT8_TEST_SHAPES: [(usize, usize, usize); 9] = [
    (2, 128, 384),
    (8, 16, 128),
    (DIRECT_ROWS_MAX, 64, 96),
    (DIRECT_ROWS_MAX + 1, 64, 96),
    (18, 128, 512),
    (7, 36, 100),
    (130, 512, 128),
    (512, 1024, 96),
    (2, 1024, 3072),
];

/// Checks the int8 matmul kernel on `device` against [`Int8Linear::forward_reference`] on the
/// CPU, for random x `[m, k]`, codes, scales and bias from `seed`: the largest difference
/// relative to the largest reference value. Run by the native (wgpu) and browser tests.
pub async fn int8_matmul_error(
    device: &Device,
    m: usize,
    k: usize,
    n: usize,
    seed: u64,
) -> Result<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut draw = |len: usize, scale: f64| -> Vec<f32> {
        (0..len)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) * scale) as f32)
            .collect()
    };
    let x = draw(m * k, 1.0);
    let codes: Vec<i8> = draw(n * k, 127.49)
        .into_iter()
        .map(|v| v.round() as i8)
        .collect();
    let scales: Vec<f32> = draw(n, 0.01).into_iter().map(|s| s.abs() + 1e-3).collect();
    let bias = draw(n, 0.1);
    let cpu = Device::flex();
    let layer =
        |dev: &Device| Int8Linear::new(&codes, scales.clone(), Some(bias.clone()), k, n, dev);
    let input = |dev: &Device| Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), dev);
    let got = layer(device)?
        .forward_gpu(input(device))
        .ok_or_else(|| VarError::Device("the int8 kernel needs a wgpu/WebGPU device".into()))?;
    let got = crate::readback::read_f32(got).await?;
    let want = layer(&cpu)?.forward_reference(input(&cpu));
    let want = crate::readback::read_f32(want).await?;
    Ok(super::relative_error(&got, &want))
}
