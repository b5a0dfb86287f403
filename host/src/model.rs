//! The UNet, in burn. Only layers the ONNX exporter writes: Conv, BatchNorm (folded into the
//! convolutions at export), ReLU, MaxPool, ConvTranspose or nearest Resize, Concat.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, activation};
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
}

impl UNetConfig {
    /// Channels of encoder level `i`.
    pub fn channels(&self, level: usize) -> usize {
        self.base_channels << level
    }

    /// Input sides must be divisible by this.
    pub fn size_multiple(&self) -> u32 {
        1 << self.depth
    }

    /// Multiply-accumulates of one forward pass at `size`x`size`, times 2 (FLOPs), counting
    /// the convolutions only.
    pub fn flops(&self, size: usize) -> f64 {
        let mut macs = 0f64;
        let conv = |cin: usize, cout: usize, k: usize, side: usize| {
            (cin * cout * k * k * side * side) as f64
        };
        for level in 0..=self.depth {
            let side = size >> level;
            let cin = if level == 0 { self.in_channels } else { self.channels(level - 1) };
            let c = self.channels(level);
            macs += conv(cin, c, 3, side) + conv(c, c, 3, side);
        }
        for level in (0..self.depth).rev() {
            let side = size >> level;
            let (c, cup) = (self.channels(level), self.channels(level + 1));
            macs += match self.upsampling {
                Upsampling::ConvTranspose => conv(cup, c, 2, side >> 1),
                Upsampling::Nearest => conv(cup, c, 1, side),
            };
            macs += conv(2 * c, c, 3, side) + conv(c, c, 3, side);
        }
        macs += conv(self.channels(0), self.num_classes, 1, size);
        2.0 * macs
    }

    /// Builds the network with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> UNet {
        let down = (0..=self.depth)
            .map(|level| {
                let cin = if level == 0 { self.in_channels } else { self.channels(level - 1) };
                DoubleConv::new(cin, self.channels(level), self.batch_norm, device)
            })
            .collect();
        let up = (0..self.depth)
            .map(|level| Up::new(self.channels(level + 1), self.channels(level), self, device))
            .collect();
        UNet {
            down,
            up,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            head: Conv2dConfig::new([self.channels(0), self.num_classes], [1, 1]).init(device),
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
    fn new(cin: usize, cout: usize, config: &UNetConfig, device: &Device) -> Self {
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
            conv: DoubleConv::new(2 * cout, cout, config.batch_norm, device),
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
    down: Vec<DoubleConv>,
    up: Vec<Up>,
    pool: MaxPool2d,
    head: Conv2d,
}

impl UNet {
    /// # Shapes
    /// - `x`: `[N, 3, H, W]` with H and W multiples of `2^depth` -> logits `[N, classes, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = Vec::with_capacity(self.down.len());
        let mut x = x;
        for (level, block) in self.down.iter().enumerate() {
            if level > 0 {
                x = self.pool.forward(x);
            }
            x = block.forward(x);
            skips.push(x.clone());
        }
        skips.pop(); // the bottleneck output is `x` itself
        for up in self.up.iter().rev() {
            let skip = skips.pop().expect("one skip per decoder level");
            x = up.forward(x, skip);
        }
        self.head.forward(x)
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
}

fn values(t: Tensor<1>) -> Vec<f32> {
    f32_values(t.into_data())
}

/// A tensor's values as f32, whatever float type the backend computed in. The conversion
/// makes the read infallible; an empty vector here would be silently missing weights.
pub fn f32_values(data: burn::tensor::TensorData) -> Vec<f32> {
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
    ConvLayer { shape, weight, bias, transpose: false, stride: 1, pad }
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
        }
    }
}
