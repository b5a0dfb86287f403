//! The UNet, in burn. Only layers the ONNX exporter writes: Conv, BatchNorm (folded into the
//! convolutions at export), ReLU, MaxPool, ConvTranspose or nearest Resize, Concat.

use burn::config::Config;
use burn::module::Module;
use burn::module::{Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData, activation};
use serde::{Deserialize, Serialize};

/// How the decoder doubles the resolution.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Upsampling {
    /// 2x2 transposed convolution with stride 2 (learned).
    #[default]
    ConvTranspose,
    /// Nearest-neighbour 2x resize followed by a 1x1 convolution.
    Nearest,
}

/// Shape of the UNet; saved as `config.json` beside every checkpoint.
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    /// Number of 2x downsamplings (the encoder has `depth + 1` levels).
    #[config(default = 4)]
    pub depth: usize,
    /// Channels of the first level; each level doubles them.
    #[config(default = 16)]
    pub base_channels: usize,
    /// BatchNorm after every 3x3 convolution.
    #[config(default = true)]
    pub batch_norm: bool,
    #[config(default = "Upsampling::ConvTranspose")]
    pub upsampling: Upsampling,
    /// Input planes (RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Output classes (cup, rim, background).
    #[config(default = 3)]
    pub num_classes: usize,
    /// The encoder: the UNet's own (`depth`, `base_channels`) or EfficientNet-Lite0's.
    #[config(default = "Encoder::Plain")]
    pub encoder: Encoder,
    /// EfficientNet-Lite0 only: its stride-2 convolutions run at stride 1 and a fixed 3x3
    /// binomial blur subsamples after their activation (Zhang's anti-aliased CNNs, 2019), so
    /// the features follow a shift of the photograph instead of aliasing with the pixel grid.
    /// The weights keep their shapes: a run can switch it on when resumed.
    #[config(default = false)]
    pub anti_alias: bool,
}

/// The network's encoder.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoder {
    /// The UNet's double convolutions and max pooling, `depth` levels of `base_channels`
    /// doubling.
    #[default]
    Plain,
    /// EfficientNet-Lite0's stem and 16 MBConv blocks (ImageNet weights with
    /// `papilla train --pretrained`), features at strides 2 to 32 feeding a UNet decoder of
    /// [`LITE0_DECODER`] channels; a double convolution at full resolution gives the
    /// finest skip. ReLU6, BatchNorm, no squeeze-excitation: every layer maps to ONNX and tract.
    EfficientNetLite0,
}

/// Whether block `i` of a Lite0 blurs and subsamples after its depthwise convolution: the
/// downsampling blocks of an anti-aliased one.
pub fn lite0_blurs(anti_alias: bool, i: usize) -> bool {
    anti_alias && LITE0_BLOCKS[i].1 == 2
}

/// EfficientNet-Lite0's MBConv blocks: (kernel, stride, expansion, in, out).
pub const LITE0_BLOCKS: [(usize, usize, usize, usize, usize); 16] = [
    (3, 1, 1, 32, 16),
    (3, 2, 6, 16, 24),
    (3, 1, 6, 24, 24),
    (5, 2, 6, 24, 40),
    (5, 1, 6, 40, 40),
    (3, 2, 6, 40, 80),
    (3, 1, 6, 80, 80),
    (3, 1, 6, 80, 80),
    (5, 1, 6, 80, 112),
    (5, 1, 6, 112, 112),
    (5, 1, 6, 112, 112),
    (5, 2, 6, 112, 192),
    (5, 1, 6, 192, 192),
    (5, 1, 6, 192, 192),
    (5, 1, 6, 192, 192),
    (3, 1, 6, 192, 320),
];
/// The blocks whose outputs are the encoder's features at strides 2, 4, 8, 16 and 32.
pub const LITE0_TAPS: [usize; 5] = [0, 2, 4, 10, 15];
/// Stem output channels.
pub const LITE0_STEM: usize = 32;
/// Decoder channels at strides 1, 2, 4, 8 and 16.
pub const LITE0_DECODER: [usize; 5] = [16, 24, 32, 48, 96];
/// TensorFlow's BatchNorm epsilon, which the ImageNet statistics were trained with.
const LITE0_BN_EPSILON: f64 = 1e-3;

impl UNetConfig {
    /// Channels of encoder level `i`.
    pub fn channels(&self, level: usize) -> usize {
        self.base_channels << level
    }

    /// Input sides must be divisible by this.
    pub fn size_multiple(&self) -> u32 {
        match self.encoder {
            Encoder::Plain => 1 << self.depth,
            Encoder::EfficientNetLite0 => 32,
        }
    }

    /// Channels of the skip connections (finest first) and of the deepest feature map.
    fn skip_channels(&self) -> (Vec<usize>, usize) {
        match self.encoder {
            Encoder::Plain => {
                ((0..self.depth).map(|l| self.channels(l)).collect(), self.channels(self.depth))
            }
            Encoder::EfficientNetLite0 => {
                let mut skips = vec![LITE0_DECODER[0]];
                skips.extend(LITE0_TAPS[..4].iter().map(|&b| LITE0_BLOCKS[b].4));
                (skips, LITE0_BLOCKS[LITE0_TAPS[4]].4)
            }
        }
    }

    /// Output channels of decoder level `level` (0: full resolution).
    fn decoder_channels(&self, level: usize) -> usize {
        match self.encoder {
            Encoder::Plain => self.channels(level),
            Encoder::EfficientNetLite0 => LITE0_DECODER[level],
        }
    }

    /// Multiply-accumulates of one forward pass at `size`x`size`, times 2 (FLOPs), counting
    /// the convolutions only.
    pub fn flops(&self, size: usize) -> f64 {
        let mut macs = 0f64;
        let conv = |cin: usize, cout: usize, k: usize, side: usize| {
            (cin * cout * k * k * side * side) as f64
        };
        match self.encoder {
            Encoder::Plain => {
                for level in 0..=self.depth {
                    let side = size >> level;
                    let cin = if level == 0 { self.in_channels } else { self.channels(level - 1) };
                    let c = self.channels(level);
                    macs += conv(cin, c, 3, side) + conv(c, c, 3, side);
                }
            }
            Encoder::EfficientNetLite0 => {
                let c = LITE0_DECODER[0];
                macs += conv(self.in_channels, c, 3, size) + conv(c, c, 3, size);
                let mut side = size / 2;
                // Anti-aliased: a stride-2 layer runs at its input's side, then the 3x3 blur
                // (one filter per channel) at its output's.
                let blur = |c: usize, side: usize| (c * 9 * side * side) as f64;
                if self.anti_alias {
                    macs += conv(self.in_channels, LITE0_STEM, 3, size) + blur(LITE0_STEM, side);
                } else {
                    macs += conv(self.in_channels, LITE0_STEM, 3, side);
                }
                for (i, (k, stride, e, cin, cout)) in LITE0_BLOCKS.into_iter().enumerate() {
                    let hidden = cin * e;
                    if e != 1 {
                        macs += conv(cin, hidden, 1, side);
                    }
                    // Depthwise: one k x k filter per channel.
                    if lite0_blurs(self.anti_alias, i) {
                        macs += (hidden * k * k * side * side) as f64;
                        side /= stride;
                        macs += blur(hidden, side);
                    } else {
                        side /= stride;
                        macs += (hidden * k * k * side * side) as f64;
                    }
                    macs += conv(hidden, cout, 1, side);
                }
            }
        }
        let (skips, bottom) = self.skip_channels();
        for (level, &skip) in skips.iter().enumerate().rev() {
            let side = size >> level;
            let c = self.decoder_channels(level);
            let cup =
                if level + 1 == skips.len() { bottom } else { self.decoder_channels(level + 1) };
            macs += match self.upsampling {
                Upsampling::ConvTranspose => conv(cup, c, 2, side >> 1),
                Upsampling::Nearest => conv(cup, c, 1, side),
            };
            macs += conv(skip + c, c, 3, side) + conv(c, c, 3, side);
        }
        macs += conv(self.decoder_channels(0), self.num_classes, 1, size);
        2.0 * macs
    }

    /// Builds the network with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> UNet {
        let (down, lite0) = match self.encoder {
            Encoder::Plain => (
                (0..=self.depth)
                    .map(|level| {
                        let cin =
                            if level == 0 { self.in_channels } else { self.channels(level - 1) };
                        DoubleConv::new(cin, self.channels(level), self.batch_norm, device)
                    })
                    .collect(),
                None,
            ),
            Encoder::EfficientNetLite0 => (
                vec![DoubleConv::new(self.in_channels, LITE0_DECODER[0], self.batch_norm, device)],
                Some(Lite0::new(self.in_channels, self.anti_alias, device)),
            ),
        };
        let (skips, bottom) = self.skip_channels();
        let up = skips
            .iter()
            .enumerate()
            .map(|(level, &skip)| {
                let cin = if level + 1 == skips.len() {
                    bottom
                } else {
                    self.decoder_channels(level + 1)
                };
                Up::new(cin, skip, self.decoder_channels(level), self, device)
            })
            .collect();
        UNet {
            down,
            up,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            head: Conv2dConfig::new([self.decoder_channels(0), self.num_classes], [1, 1])
                .init(device),
            lite0,
        }
    }
}

/// Two 3x3 convolutions, each with optional BatchNorm and a ReLU.
#[derive(Module, Debug)]
pub struct DoubleConv {
    conv1: Conv2d,
    norm1: Option<BatchNorm>,
    conv2: Conv2d,
    norm2: Option<BatchNorm>,
}

impl DoubleConv {
    fn new(cin: usize, cout: usize, batch_norm: bool, device: &Device) -> Self {
        let conv = |cin| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(!batch_norm)
                .init(device)
        };
        let norm = || batch_norm.then(|| BatchNormConfig::new(cout).init(device));
        Self { conv1: conv(cin), norm1: norm(), conv2: conv(cout), norm2: norm() }
    }

    /// # Shapes
    /// - `x`: `[N, Cin, H, W]` -> `[N, Cout, H, W]`
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv1.forward(x);
        if let Some(n) = &self.norm1 {
            x = n.forward(x);
        }
        let mut x = self.conv2.forward(activation::relu(x));
        if let Some(n) = &self.norm2 {
            x = n.forward(x);
        }
        activation::relu(x)
    }
}

/// One decoder level: upsample, concatenate the skip connection, DoubleConv.
#[derive(Module, Debug)]
pub struct Up {
    transpose: Option<ConvTranspose2d>,
    project: Option<Conv2d>,
    conv: DoubleConv,
}

impl Up {
    /// `cin` channels come up, `skip` come across, `cout` go on.
    fn new(cin: usize, skip: usize, cout: usize, config: &UNetConfig, device: &Device) -> Self {
        let (transpose, project) = match config.upsampling {
            Upsampling::ConvTranspose => (
                Some(
                    ConvTranspose2dConfig::new([cin, cout], [2, 2])
                        .with_stride([2, 2])
                        .init(device),
                ),
                None,
            ),
            Upsampling::Nearest => {
                (None, Some(Conv2dConfig::new([cin, cout], [1, 1]).init(device)))
            }
        };
        Self {
            transpose,
            project,
            conv: DoubleConv::new(skip + cout, cout, config.batch_norm, device),
        }
    }

    /// # Shapes
    /// - `x`: `[N, Cin, H/2, W/2]`, `skip`: `[N, Cout, H, W]` -> `[N, Cout, H, W]`
    fn forward(&self, x: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
        let x = match (&self.transpose, &self.project) {
            (Some(t), _) => t.forward(x),
            (None, Some(p)) => {
                let [_, _, h, w] = skip.dims();
                let up = interpolate(
                    x,
                    InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]),
                );
                p.forward(up)
            }
            (None, None) => unreachable!("Up::new sets one upsampling path"),
        };
        self.conv.forward(Tensor::cat(vec![skip, x], 1))
    }
}

/// UNet for disc/cup segmentation: per-pixel class logits.
#[derive(Module, Debug)]
pub struct UNet {
    /// Plain: every encoder level; EfficientNet-Lite0: the full-resolution level only.
    down: Vec<DoubleConv>,
    up: Vec<Up>,
    pool: MaxPool2d,
    head: Conv2d,
    lite0: Option<Lite0>,
}

impl UNet {
    /// # Shapes
    /// - `x`: `[N, 3, H, W]` with H and W multiples of `2^depth` -> logits `[N, classes, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = Vec::with_capacity(self.up.len() + 1);
        let mut x = x;
        if let Some(lite0) = &self.lite0 {
            skips.push(self.down[0].forward(x.clone()));
            skips.extend(lite0.forward(x));
            x = skips.pop().expect("the encoder's deepest features");
        } else {
            for (level, block) in self.down.iter().enumerate() {
                if level > 0 {
                    x = self.pool.forward(x);
                }
                x = block.forward(x);
                skips.push(x.clone());
            }
            skips.pop(); // the bottleneck output is `x` itself
        }
        for up in self.up.iter().rev() {
            let skip = skips.pop().expect("one skip per decoder level");
            x = up.forward(x, skip);
        }
        self.head.forward(x)
    }
}

/// A convolution (no bias) and its BatchNorm, at TensorFlow's epsilon.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    norm: BatchNorm,
}

impl ConvBn {
    /// A `k`x`k` convolution, padded to keep `side / stride`; `groups == cin` is depthwise.
    fn new(cin: usize, cout: usize, k: usize, stride: usize, groups: usize, d: &Device) -> Self {
        let p = k / 2;
        Self {
            conv: Conv2dConfig::new([cin, cout], [k, k])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(d),
            norm: BatchNormConfig::new(cout).with_epsilon(LITE0_BN_EPSILON).init(d),
        }
    }

    fn forward(&self, x: Tensor<4>, relu6: bool) -> Tensor<4> {
        let x = self.norm.forward(self.conv.forward(x));
        if relu6 { activation::relu6(x) } else { x }
    }
}

/// EfficientNet's inverted residual without squeeze-excitation (the Lite variant): 1x1
/// expansion, depthwise `k`x`k` at the block's stride, 1x1 projection, and the identity added
/// where the shape is kept.
#[derive(Module, Debug)]
pub struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
}

impl MbConv {
    /// The block of `(k, stride, e, cin, cout)`; anti-aliased, its depthwise convolution runs
    /// at stride 1 and [`blur_subsample`] follows it.
    fn new(
        (k, stride, e, cin, cout): (usize, usize, usize, usize, usize),
        anti_alias: bool,
        d: &Device,
    ) -> Self {
        let hidden = cin * e;
        let stride = if anti_alias { 1 } else { stride };
        Self {
            expand: (e != 1).then(|| ConvBn::new(cin, hidden, 1, 1, 1, d)),
            depthwise: ConvBn::new(hidden, hidden, k, stride, hidden, d),
            project: ConvBn::new(hidden, cout, 1, 1, 1, d),
        }
    }

    fn residual(&self) -> bool {
        let [cout, _, _, _] = self.project.conv.weight.dims();
        let cin = match &self.expand {
            Some(e) => e.conv.weight.dims()[1],
            None => self.depthwise.conv.weight.dims()[0],
        };
        self.depthwise.conv.stride == [1, 1] && cin == cout
    }

    /// `blur`: the block downsamples and is anti-aliased.
    fn forward(&self, x: Tensor<4>, blur: bool) -> Tensor<4> {
        let h = match &self.expand {
            Some(e) => e.forward(x.clone(), true),
            None => x.clone(),
        };
        let mut h = self.depthwise.forward(h, true);
        if blur {
            h = blur_subsample(h);
        }
        let h = self.project.forward(h, false);
        if self.residual() { h + x } else { h }
    }
}

/// EfficientNet-Lite0 without its head: stem and MBConv blocks ([`LITE0_BLOCKS`]).
#[derive(Module, Debug)]
pub struct Lite0 {
    stem: ConvBn,
    blocks: Vec<MbConv>,
}

impl Lite0 {
    fn new(cin: usize, anti_alias: bool, d: &Device) -> Self {
        Self {
            stem: ConvBn::new(cin, LITE0_STEM, 3, if anti_alias { 1 } else { 2 }, 1, d),
            blocks: LITE0_BLOCKS.iter().map(|&b| MbConv::new(b, anti_alias, d)).collect(),
        }
    }

    /// Anti-aliased: the stem, built at stride 2, runs at stride 1 (and so every downsampling
    /// block: the option is the whole encoder's).
    fn anti_aliased(&self) -> bool {
        self.stem.conv.stride == [1, 1]
    }

    /// Whether block `i` blurs and subsamples after its depthwise convolution.
    fn blurs(&self, i: usize) -> bool {
        lite0_blurs(self.anti_aliased(), i)
    }

    /// The features at strides 2, 4, 8, 16 and 32 ([`LITE0_TAPS`]).
    fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut x = self.stem.forward(x, true);
        if self.anti_aliased() {
            x = blur_subsample(x);
        }
        let mut taps = Vec::with_capacity(LITE0_TAPS.len());
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, self.blurs(i));
            if LITE0_TAPS.contains(&i) {
                taps.push(x.clone());
            }
        }
        taps
    }

    /// Every convolution and BatchNorm with the names the ImageNet weights give them.
    fn named(&mut self) -> Vec<(String, String, &mut ConvBn)> {
        let mut out = vec![("_conv_stem".to_owned(), "_bn0".to_owned(), &mut self.stem)];
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("_blocks.{i}.");
            if let Some(e) = &mut b.expand {
                out.push((format!("{p}_expand_conv"), format!("{p}_bn0"), e));
            }
            out.push((format!("{p}_depthwise_conv"), format!("{p}_bn1"), &mut b.depthwise));
            out.push((format!("{p}_project_conv"), format!("{p}_bn2"), &mut b.project));
        }
        out
    }
}

/// The 3x3 binomial filter `[1 2 1]' [1 2 1] / 16` of an anti-aliased subsampling.
pub const BLUR3: [f32; 9] = [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0];

/// The `[channels, 1, 3, 3]` depthwise weights of [`blur_subsample`], normalised.
pub fn blur_weights(channels: usize) -> Vec<f32> {
    (0..channels).flat_map(|_| BLUR3.map(|v| v / 16.0)).collect()
}

/// Each channel blurred by [`BLUR3`] (zero padding 1) and taken at every second pixel: half
/// the side, with what would alias removed first.
///
/// # Shapes
/// - `x`: `[N, C, H, W]` -> `[N, C, ceil(H/2), ceil(W/2)]`
pub fn blur_subsample(x: Tensor<4>) -> Tensor<4> {
    let [_, c, _, _] = x.dims();
    let kernel = blur_weights(c);
    let weight = Tensor::<4>::from_data(TensorData::new(kernel, [c, 1, 3, 3]), &x.device());
    burn::tensor::module::conv2d(
        x,
        weight,
        None,
        burn::tensor::ops::ConvOptions::new([2, 2], [1, 1], [1, 1], c),
    )
}

/// Why pretrained encoder weights could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error("{path}: cannot read")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a safetensors file: {message}")]
    Format { path: std::path::PathBuf, message: String },
    #[error("{path}: {name}: {message}")]
    Tensor { path: std::path::PathBuf, name: String, message: String },
    #[error("the model has no EfficientNet-Lite0 encoder to load {path} into")]
    NoEncoder { path: std::path::PathBuf },
}

/// Named float32 tensors: name -> (shape, values).
pub type NamedTensors = std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The float32 tensors of a safetensors file.
pub fn read_safetensors(path: &std::path::Path) -> Result<NamedTensors, PretrainedError> {
    let bytes = std::fs::read(path)
        .map_err(|source| PretrainedError::Io { path: path.to_owned(), source })?;
    let bad = |message: String| PretrainedError::Format { path: path.to_owned(), message };
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad("shorter than its 8-byte header length".into()))?;
    let header = bytes
        .get(8..8usize.saturating_add(n))
        .ok_or_else(|| bad(format!("header of {n} bytes past the end")))?;
    let header: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
    let data = &bytes[8 + n..];
    let mut out = std::collections::BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let entry: SafeTensor =
            serde_json::from_value(v).map_err(|e| bad(format!("{name}: {e}")))?;
        let tensor_err = |message: String| PretrainedError::Tensor {
            path: path.to_owned(),
            name: name.clone(),
            message,
        };
        if entry.dtype != "F32" {
            return Err(tensor_err(format!("dtype {} (only F32 is read)", entry.dtype)));
        }
        let [a, b] = entry.data_offsets;
        let count: usize = entry.shape.iter().product();
        let raw = data.get(a..b).filter(|r| r.len() == count * 4).ok_or_else(|| {
            tensor_err(format!("bytes {a}..{b} do not hold shape {:?}", entry.shape))
        })?;
        let values = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        out.insert(name, (entry.shape, values));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct SafeTensor {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

impl UNet {
    /// Replaces the EfficientNet-Lite0 encoder's weights and BatchNorm statistics by those of
    /// `path` (`scripts/fetch-efficientnet-lite0.py`). The ImageNet stem expects
    /// `(x - mean) / std` of `x` in 0..1; the project's input is `(x - 0.5) / 0.5`, so the
    /// stem's weights are rescaled by `0.5 / std` per input channel and the offset this leaves
    /// is folded into its BatchNorm's running mean (the same response on every interior pixel).
    pub fn load_lite0(&mut self, path: &std::path::Path) -> Result<usize, PretrainedError> {
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        let mut tensors = read_safetensors(path)?;
        let lite0 = self
            .lite0
            .as_mut()
            .ok_or_else(|| PretrainedError::NoEncoder { path: path.to_owned() })?;
        let mut loaded = 0;
        for (conv, bn, layer) in lite0.named() {
            let mut take = |name: String, shape: &[usize]| {
                let (s, v) = tensors.remove(&name).ok_or_else(|| PretrainedError::Tensor {
                    path: path.to_owned(),
                    name: name.clone(),
                    message: "missing".into(),
                })?;
                if s != shape {
                    return Err(PretrainedError::Tensor {
                        path: path.to_owned(),
                        name,
                        message: format!("shape {s:?}, the model's {shape:?}"),
                    });
                }
                loaded += 1;
                Ok(v)
            };
            let device = layer.conv.weight.device();
            let wshape = layer.conv.weight.dims();
            let mut w = take(format!("{conv}.weight"), &wshape)?;
            let c = wshape[0];
            let [gamma, beta, mean, var] = ["weight", "bias", "running_mean", "running_var"]
                .map(|f| take(format!("{bn}.{f}"), &[c]));
            let (gamma, beta, mut mean, var) = (gamma?, beta?, mean?, var?);
            if conv == "_conv_stem" {
                // conv_imagenet(x) = conv(input * 0.5 / std) + sum w (0.5 - mean) / std.
                let per = wshape[2] * wshape[3];
                for o in 0..c {
                    let mut offset = 0f32;
                    for i in 0..wshape[1] {
                        let k = &mut w[(o * wshape[1] + i) * per..(o * wshape[1] + i + 1) * per];
                        offset += k.iter().sum::<f32>() * (0.5 - MEAN[i]) / STD[i];
                        k.iter_mut().for_each(|v| *v *= 0.5 / STD[i]);
                    }
                    mean[o] -= offset;
                }
            }
            let t1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [c]), &device);
            layer.conv.weight =
                Param::from_tensor(Tensor::<4>::from_data(TensorData::new(w, wshape), &device));
            layer.norm.gamma = Param::from_tensor(t1(gamma));
            layer.norm.beta = Param::from_tensor(t1(beta));
            layer.norm.running_mean = RunningState::new(t1(mean));
            layer.norm.running_var = RunningState::new(t1(var));
        }
        if let Some(name) = tensors.keys().next() {
            return Err(PretrainedError::Tensor {
                path: path.to_owned(),
                name: name.clone(),
                message: "not a tensor of the model's encoder".into(),
            });
        }
        Ok(loaded)
    }
}

/// One convolution of an exported graph, BatchNorm folded in.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayer {
    /// Conv: `[Cout, Cin, kH, kW]`; ConvTranspose: `[Cin, Cout, kH, kW]` (ONNX's layouts).
    pub shape: [usize; 4],
    pub weight: Vec<f32>,
    /// One per output channel (zeros where the layer had none).
    pub bias: Vec<f32>,
    pub transpose: bool,
    pub stride: usize,
    pub pad: usize,
    /// Input channel groups (the input channels: depthwise).
    pub groups: usize,
}

impl ConvLayer {
    pub fn out_channels(&self) -> usize {
        if self.transpose { self.shape[1] } else { self.shape[0] }
    }
}

/// A decoder level as plain arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct UpLayers {
    /// ConvTranspose 2x2/2, or the 1x1 convolution after a nearest 2x resize.
    pub upsample: ConvLayer,
    pub conv: [ConvLayer; 2],
}

/// The whole UNet as plain arrays: what the ONNX writer needs, and nothing of burn.
#[derive(Clone, Debug, PartialEq)]
pub struct UNetLayers {
    pub upsampling: Upsampling,
    /// Encoder levels, each two 3x3 convolutions followed by ReLU.
    pub down: Vec<[ConvLayer; 2]>,
    /// Decoder levels in encoder order (`up[0]` is the shallowest); run deepest first.
    pub up: Vec<UpLayers>,
    /// 1x1 convolution to class logits.
    pub head: ConvLayer,
    /// An EfficientNet-Lite0 encoder beside `down`'s one full-resolution level.
    pub lite0: Option<Lite0Layers>,
}

/// An MBConv block as plain arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct MbConvLayers {
    /// 1x1 expansion and ReLU6 (absent at expansion 1).
    pub expand: Option<ConvLayer>,
    /// Depthwise convolution at the block's stride, and ReLU6.
    pub depthwise: ConvLayer,
    /// 1x1 projection, linear.
    pub project: ConvLayer,
    /// The block's input is added to the projection.
    pub residual: bool,
}

/// EfficientNet-Lite0 as plain arrays: stem (ReLU6) and blocks; [`LITE0_TAPS`] name the
/// blocks whose outputs feed the decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct Lite0Layers {
    pub stem: ConvLayer,
    pub blocks: Vec<MbConvLayers>,
    /// [`blur_subsample`] after the stem's activation and after each downsampling block's
    /// depthwise activation (whose convolutions then have stride 1).
    pub anti_alias: bool,
}

fn values(t: Tensor<1>) -> Vec<f32> {
    f32_values(t.into_data())
}

/// A tensor's values as f32, whatever float type the backend computed in. The conversion
/// makes the read infallible; an empty vector here would be silently missing weights.
pub fn f32_values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().try_to_vec::<f32>().expect("converted to f32 above")
}

fn conv_layer(conv: &Conv2d, norm: Option<&BatchNorm>) -> ConvLayer {
    let w = conv.weight.val();
    let shape = w.dims();
    let mut weight = f32_values(w.into_data());
    let mut bias =
        conv.bias.as_ref().map(|b| values(b.val())).unwrap_or_else(|| vec![0.0; shape[0]]);
    if let Some(n) = norm {
        // y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta, per output channel.
        let (gamma, beta) = (values(n.gamma.val()), values(n.beta.val()));
        let (mean, var) = (values(n.running_mean.value()), values(n.running_var.value()));
        let per = shape[1] * shape[2] * shape[3];
        for c in 0..shape[0] {
            let k = gamma[c] / (var[c] + n.epsilon as f32).sqrt();
            weight[c * per..(c + 1) * per].iter_mut().for_each(|v| *v *= k);
            bias[c] = (bias[c] - mean[c]) * k + beta[c];
        }
    }
    let pad = shape[2] / 2;
    ConvLayer {
        shape,
        weight,
        bias,
        transpose: false,
        stride: conv.stride[0],
        pad,
        groups: conv.groups,
    }
}

impl DoubleConv {
    fn layers(&self) -> [ConvLayer; 2] {
        [conv_layer(&self.conv1, self.norm1.as_ref()), conv_layer(&self.conv2, self.norm2.as_ref())]
    }
}

impl UNet {
    /// The trained weights as plain arrays, BatchNorm folded into the convolutions with its
    /// running statistics (inference mode).
    pub fn layers(&self) -> UNetLayers {
        let up = self
            .up
            .iter()
            .map(|u| {
                let upsample = match (&u.transpose, &u.project) {
                    (Some(t), _) => {
                        let w = t.weight.val();
                        let shape = w.dims();
                        ConvLayer {
                            shape,
                            weight: f32_values(w.into_data()),
                            bias: t
                                .bias
                                .as_ref()
                                .map(|b| values(b.val()))
                                .unwrap_or_else(|| vec![0.0; shape[1]]),
                            transpose: true,
                            stride: 2,
                            pad: 0,
                            groups: 1,
                        }
                    }
                    (None, Some(p)) => conv_layer(p, None),
                    (None, None) => unreachable!("Up::new sets one upsampling path"),
                };
                UpLayers { upsample, conv: u.conv.layers() }
            })
            .collect();
        UNetLayers {
            upsampling: if self.up.first().is_some_and(|u| u.transpose.is_none()) {
                Upsampling::Nearest
            } else {
                Upsampling::ConvTranspose
            },
            down: self.down.iter().map(DoubleConv::layers).collect(),
            up,
            head: conv_layer(&self.head, None),
            lite0: self.lite0.as_ref().map(|e| Lite0Layers {
                stem: e.stem.layer(),
                blocks: e
                    .blocks
                    .iter()
                    .map(|b| MbConvLayers {
                        expand: b.expand.as_ref().map(ConvBn::layer),
                        depthwise: b.depthwise.layer(),
                        project: b.project.layer(),
                        residual: b.residual(),
                    })
                    .collect(),
                anti_alias: e.anti_aliased(),
            }),
        }
    }
}

impl ConvBn {
    fn layer(&self) -> ConvLayer {
        conv_layer(&self.conv, Some(&self.norm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of `tensors`, as `scripts/fetch-efficientnet-lite0.py` writes one.
    fn write_safetensors(path: &std::path::Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
        let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
        for (name, shape, values) in tensors {
            let a = data.len();
            data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [a, data.len()]}),
            );
        }
        let text = serde_json::to_vec(&header).unwrap();
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend(text);
        bytes.extend(data);
        std::fs::write(path, bytes).unwrap();
    }

    /// Every tensor the encoder takes, each filled with its own index (plus a ramp), in the
    /// wheel's names.
    fn imagenet_like(model: &mut UNet) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        for (conv, bn, layer) in model.lite0.as_mut().unwrap().named() {
            let wshape = layer.conv.weight.dims().to_vec();
            let c = wshape[0];
            let n = out.len() as f32;
            out.push((
                format!("{conv}.weight"),
                wshape.clone(),
                (0..wshape.iter().product::<usize>()).map(|i| n + i as f32 * 1e-3).collect(),
            ));
            for f in ["weight", "bias", "running_mean", "running_var"] {
                let n = out.len() as f32;
                out.push((format!("{bn}.{f}"), vec![c], (0..c).map(|i| n + i as f32).collect()));
            }
        }
        out
    }

    #[test]
    fn imagenet_weights_load_into_the_encoder_with_the_stem_rescaled_to_the_input_norm() {
        let device = Device::flex();
        let config = UNetConfig::new().with_encoder(Encoder::EfficientNetLite0);
        let mut model = config.init(&device);
        let mut tensors = imagenet_like(&mut model);
        // 1 stem + 15 expansions + 16 depthwise + 16 projections, 5 tensors each.
        assert_eq!(tensors.len(), 48 * 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lite0.safetensors");
        write_safetensors(&path, &tensors);
        assert_eq!(model.load_lite0(&path).unwrap(), 240);
        let lite0 = model.lite0.as_ref().unwrap();
        let dw = f32_values(lite0.blocks[7].depthwise.conv.weight.val().into_data());
        let (_, _, want) =
            tensors.iter().find(|t| t.0 == "_blocks.7._depthwise_conv.weight").unwrap();
        assert_eq!(&dw, want);
        // The stem sees (x - 0.5) / 0.5 instead of (x - mean) / std: its weights scaled by
        // 0.5 / std per input channel, the offset moved into the running mean.
        let stem = f32_values(lite0.stem.conv.weight.val().into_data());
        let (_, _, raw) = &tensors[0];
        assert!((stem[0] - raw[0] * 0.5 / 0.229).abs() < 1e-6, "{} vs {}", stem[0], raw[0]);
        assert!((stem[27 + 9] - raw[27 + 9] * 0.5 / 0.224).abs() < 1e-6);
        let mean = f32_values(lite0.stem.norm.running_mean.value().into_data());
        let offset: f32 = (0..3)
            .map(|i| {
                let k: f32 = raw[i * 9..(i + 1) * 9].iter().sum();
                k * (0.5 - [0.485, 0.456, 0.406][i]) / [0.229, 0.224, 0.225][i]
            })
            .sum();
        assert!((mean[0] - (tensors[3].2[0] - offset)).abs() < 1e-4, "{} {offset}", mean[0]);
        // The network still runs, at the input's size.
        let x = Tensor::<4>::zeros([1, 3, 64, 64], &device);
        assert_eq!(model.forward(x).dims(), [1, 3, 64, 64]);

        // A missing tensor, a wrong shape and a stray tensor are each named.
        let mut fresh = config.init(&device);
        let missing = tensors.remove(100).0;
        write_safetensors(&path, &tensors);
        let err = fresh.load_lite0(&path).unwrap_err().to_string();
        assert!(err.contains(&missing) && err.contains("missing"), "{err}");
        tensors.push(("_blocks.99._bn9.weight".into(), vec![1], vec![0.0]));
        tensors.insert(100, (missing.clone(), vec![7], vec![0.0; 7]));
        write_safetensors(&path, &tensors);
        let err = fresh.load_lite0(&path).unwrap_err().to_string();
        assert!(err.contains(&missing) && err.contains("[7]"), "{err}");
        // A plain UNet has no encoder to load into.
        let err = UNetConfig::new().init(&device).load_lite0(&path).unwrap_err().to_string();
        assert!(err.contains("no EfficientNet-Lite0 encoder"), "{err}");
        std::fs::write(&path, b"\x10\0\0\0\0\0\0\0{not json").unwrap();
        let err = config.init(&device).load_lite0(&path).unwrap_err().to_string();
        assert!(err.contains("not a safetensors file"), "{err}");
    }

    #[test]
    fn blur_subsampling_does_not_alias_a_checkerboard() {
        // Plain subsampling of a one-pixel checkerboard gives all 0 or all 1 depending on where
        // the grid falls; blurred first, both phases give its mean.
        let device = Device::flex();
        let board = |phase: usize| {
            let v: Vec<f32> =
                (0..2 * 8 * 8).map(|i| ((i % 8 + (i / 8) % 8 + phase) % 2) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(v, [1, 2, 8, 8]), &device)
        };
        for phase in [0, 1] {
            let out = blur_subsample(board(phase));
            assert_eq!(out.dims(), [1, 2, 4, 4]);
            let v = f32_values(out.into_data());
            // Interior output pixels (away from the zero padding): exactly the mean.
            for c in 0..2 {
                for y in 1..4 {
                    for x in 1..4 {
                        let got = v[c * 16 + y * 4 + x];
                        assert!((got - 0.5).abs() < 1e-6, "phase {phase} ({x}, {y}): {got}");
                    }
                }
            }
        }
    }

    #[test]
    fn anti_aliasing_keeps_the_weights_and_costs_0_12_gflop_more() {
        let device = Device::flex();
        let plain = UNetConfig::new().with_encoder(Encoder::EfficientNetLite0);
        let aa = plain.clone().with_anti_alias(true);
        // By hand: the stem and the four downsampling depthwise layers at their input's side,
        // and the blurs: 61 M multiply-adds more.
        let extra = (aa.flops(224) - plain.flops(224)) / 1e9;
        assert!((0.11..0.13).contains(&extra), "{extra}");
        // Shapes unchanged: a plain run's weights load into the anti-aliased network.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bpk");
        plain.init(&device).save_file(&path).unwrap();
        let model = aa.init(&device).try_load_file(&path).unwrap();
        assert!(model.lite0.as_ref().unwrap().anti_aliased());
        let x = Tensor::<4>::zeros([1, 3, 64, 64], &device);
        assert_eq!(model.forward(x).dims(), [1, 3, 64, 64]);
    }

    #[test]
    fn the_lite0_network_costs_2_5_gflop_at_224_px() {
        // By hand: stem and blocks 0.37 G multiply-adds (EfficientNet-Lite0's 0.41 less its
        // 1280-channel head), full-resolution level 0.14, decoder 0.74: 1.25 G, 2.5 GFLOP.
        let c = UNetConfig::new().with_encoder(Encoder::EfficientNetLite0);
        let gflop = c.flops(224) / 1e9;
        assert!((2.45..2.55).contains(&gflop), "{gflop}");
        assert_eq!(c.size_multiple(), 32);
    }
}
