//! ONNX graphs of a trained UNet, written directly from ONNX's protobuf types (tract's prost
//! build, `tract_onnx::pb`): burn has no exporter. Opset 13, standard operators only (tract
//! refuses Microsoft contrib operators), BatchNorm already folded, dynamic batch.
//!
//! Three forms:
//! - [`Form::F32`]: Conv/Relu/MaxPool/ConvTranspose or Resize/Concat.
//! - [`Form::QLinear`]: every 3x3 convolution as `QLinearConv` on 8-bit activations ([`ActType`])
//!   and int8 weights, the ReLU folded into the output's zero point (0.0 is the lowest code);
//!   pooling on 8-bit; upsampling,
//!   concatenation and the 1x1 head in f32 between Dequantize/QuantizeLinear. tract runs these
//!   convolutions with integer kernels.
//! - [`Form::Qdq`]: the f32 graph with QuantizeLinear/DequantizeLinear pairs on the inputs of
//!   the 3x3 convolutions and int8 weights behind DequantizeLinear: the form onnxruntime fuses.
//!
//! Tensor names are stable (`d{level}_{1|2}`, `u{level}_up`, `u{level}_cat`, ...) so that
//! calibration ranges measured on the f32 graph name the tensors of the quantized ones.

use std::collections::BTreeMap;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use crate::model::{
    ConvLayer, LITE0_STEM, LITE0_TAPS, UNetLayers, Upsampling, blur_weights, lite0_blurs,
};

/// What follows a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activation {
    Relu,
    /// `Clip(0, 6)` (EfficientNet-Lite).
    Relu6,
    /// Nothing (a projection).
    Linear,
}

pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 7;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

/// Which graph to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    F32,
    QLinear,
    Qdq,
}

/// Weight quantization granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WeightScales {
    /// One scale per tensor (tract: about 2x faster).
    PerTensor,
    /// One scale per output channel (more accurate after BatchNorm folding).
    PerChannel,
}

/// Quantized activation type (weights are always int8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ActType {
    U8,
    I8,
}

/// Observed value range of each named activation: `(min, max)`.
pub type Ranges = BTreeMap<String, (f32, f32)>;

/// Options of one export.
#[derive(Clone, Debug)]
pub struct GraphOptions {
    pub height: usize,
    pub width: usize,
    pub form: Form,
    pub weights: WeightScales,
    /// Type of quantized activations.
    pub activations: ActType,
    /// `metadata_props` of the model.
    pub metadata: Vec<(String, String)>,
}

/// Builds the graph; `ranges` are required for the quantized forms.
pub fn build(
    layers: &UNetLayers,
    options: &GraphOptions,
    ranges: Option<&Ranges>,
) -> Result<pb::ModelProto, String> {
    let mut g = Builder::default();
    let q = match options.form {
        Form::F32 => None,
        _ => Some(Quant {
            ranges: ranges.ok_or("a quantized graph needs calibration ranges")?,
            weights: options.weights,
            signed: options.activations == ActType::I8,
        }),
    };
    let depth = layers.up.len();
    let mut skips: Vec<Act> = Vec::with_capacity(depth + 1);
    let mut x = Act::F32(INPUT.to_owned());
    for (level, convs) in layers.down.iter().enumerate() {
        if level > 0 {
            x = g.max_pool(x, &format!("p{level}"));
        }
        x = g.conv_relu(x, &convs[0], &format!("d{level}_1"), q.as_ref(), options.form)?;
        x = g.conv_relu(x, &convs[1], &format!("d{level}_2"), q.as_ref(), options.form)?;
        skips.push(x.clone());
    }
    if let Some(lite0) = &layers.lite0 {
        if options.form == Form::QLinear {
            return Err(
                "the QLinear form covers the plain UNet only: export the EfficientNet-Lite0 \
                        encoder as qdq"
                    .into(),
            );
        }
        let form = options.form;
        let aa = lite0.anti_alias;
        // Anti-aliased, a downsampling layer writes `{name}_full` and the blur `name`, so the
        // calibrated names are the same either way.
        let full = |name: &str, blurs: bool| {
            if blurs { format!("{name}_full") } else { name.to_owned() }
        };
        let mut e = Act::F32(INPUT.to_owned());
        let stem = full("e_stem", aa);
        e = g.conv_act(e, &lite0.stem, &stem, Activation::Relu6, q.as_ref(), form)?;
        if aa {
            e = g.blur_subsample(e, "e_stem", LITE0_STEM, q.as_ref());
        }
        for (i, b) in lite0.blocks.iter().enumerate() {
            let input = e.clone();
            let mut h = e;
            if let Some(expand) = &b.expand {
                h =
                    g.conv_act(h, expand, &format!("e{i}_x"), Activation::Relu6, q.as_ref(), form)?;
            }
            let dw = format!("e{i}_dw");
            let blurs = lite0_blurs(aa, i);
            let dw_out = full(&dw, blurs);
            h = g.conv_act(h, &b.depthwise, &dw_out, Activation::Relu6, q.as_ref(), form)?;
            if blurs {
                h = g.blur_subsample(h, &dw, b.depthwise.shape[0], q.as_ref());
            }
            let out = format!("e{i}");
            e = if b.residual {
                let p = format!("e{i}_p");
                let h = g.conv_act(h, &b.project, &p, Activation::Linear, q.as_ref(), form)?;
                let (a, h) = (g.dequant(input, q.as_ref()), g.dequant(h, q.as_ref()));
                g.node("Add", &[&a, &h], &[&out], vec![]);
                Act::F32(out)
            } else {
                g.conv_act(h, &b.project, &out, Activation::Linear, q.as_ref(), form)?
            };
            if LITE0_TAPS.contains(&i) {
                skips.push(e.clone());
            }
        }
    }
    x = skips.pop().ok_or("an encoder level")?;
    for level in (0..depth).rev() {
        let up = &layers.up[level];
        let xf = g.dequant(x, q.as_ref());
        let upname = format!("u{level}_up");
        match layers.upsampling {
            Upsampling::ConvTranspose => g.conv_f32(&xf, &up.upsample, &upname),
            Upsampling::Nearest => {
                let scales = g.init_f32(&format!("{upname}_scales"), &[4], &[1.0, 1.0, 2.0, 2.0]);
                let resized = format!("{upname}_resized");
                g.node(
                    "Resize",
                    &[&xf, "", &scales],
                    &[&resized],
                    vec![
                        attr_s("mode", "nearest"),
                        attr_s("coordinate_transformation_mode", "asymmetric"),
                        attr_s("nearest_mode", "floor"),
                    ],
                );
                g.conv_f32(&resized, &up.upsample, &upname);
            }
        }
        let skip = skips.pop().ok_or("one skip per decoder level")?;
        let skipf = g.dequant(skip, q.as_ref());
        let cat = format!("u{level}_cat");
        g.node("Concat", &[&skipf, &upname], &[&cat], vec![attr_i("axis", 1)]);
        x = match (&q, options.form) {
            (Some(q), Form::QLinear) => g.quantize(&cat, q.range(&cat)?, q.signed),
            _ => Act::F32(cat),
        };
        x = g.conv_relu(x, &up.conv[0], &format!("u{level}_1"), q.as_ref(), options.form)?;
        x = g.conv_relu(x, &up.conv[1], &format!("u{level}_2"), q.as_ref(), options.form)?;
    }
    let xf = g.dequant(x, q.as_ref());
    g.conv_f32(&xf, &layers.head, OUTPUT);

    let classes = layers.head.out_channels();
    let outputs = vec![value_info(OUTPUT, classes, options)];
    let graph = pb::GraphProto {
        node: g.nodes,
        name: "papilla_unet".into(),
        initializer: g.inits,
        input: vec![value_info(INPUT, 3, options)],
        output: outputs,
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "papilla".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: options
            .metadata
            .iter()
            .map(|(k, v)| pb::StringStringEntryProto { key: k.clone(), value: v.clone() })
            .collect(),
        ..Default::default()
    })
}

/// Serialised protobuf bytes.
pub fn to_bytes(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Names of the activations whose ranges the quantized forms need, in graph order.
pub fn calibration_tensors(layers: &UNetLayers) -> Vec<String> {
    let depth = layers.up.len();
    let mut names = vec![INPUT.to_owned()];
    for level in 0..layers.down.len() {
        if level > 0 {
            names.push(format!("p{level}"));
        }
        names.push(format!("d{level}_1"));
        names.push(format!("d{level}_2"));
    }
    if let Some(lite0) = &layers.lite0 {
        names.push("e_stem".to_owned());
        for (i, b) in lite0.blocks.iter().enumerate() {
            if b.expand.is_some() {
                names.push(format!("e{i}_x"));
            }
            names.push(format!("e{i}_dw"));
            names.push(format!("e{i}"));
        }
    }
    for level in (0..depth).rev() {
        names.push(format!("u{level}_cat"));
        names.push(format!("u{level}_1"));
        names.push(format!("u{level}_2"));
    }
    names
}

struct Quant<'a> {
    ranges: &'a Ranges,
    weights: WeightScales,
    /// int8 activations (zero points shifted by -128) instead of uint8.
    signed: bool,
}

impl Quant<'_> {
    fn range(&self, name: &str) -> Result<(f32, f32), String> {
        self.ranges.get(name).copied().ok_or_else(|| format!("no calibration range for {name}"))
    }
}

/// Affine uint8 parameters covering `[min, max]` (always including 0): `(scale, zero_point)`.
pub fn uint8_params((min, max): (f32, f32)) -> (f32, u8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = ((max - min) / 255.0).max(1e-8);
    let zp = (-min / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// An activation flowing through the graph.
#[derive(Clone, Debug)]
enum Act {
    F32(String),
    /// uint8 tensor with the names of its scale and zero-point initialisers.
    U8 {
        name: String,
        scale: String,
        zp: String,
        scale_v: f32,
    },
}

#[derive(Default)]
struct Builder {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
}

impl Builder {
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.to_owned(),
            attribute,
            ..Default::default()
        });
    }

    fn init(&mut self, name: &str, dims: &[usize], dt: DataType, raw: Vec<u8>) -> String {
        self.inits.push(pb::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dt as i32,
            name: name.to_owned(),
            raw_data: raw,
            ..Default::default()
        });
        name.to_owned()
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        self.init(name, dims, DataType::Float, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// A zero point given on the uint8 scale, stored as uint8 or (shifted) int8.
    fn init_zp(&mut self, name: &str, v: u8, signed: bool) -> String {
        if signed {
            self.init(name, &[], DataType::Int8, vec![(v as i16 - 128) as i8 as u8])
        } else {
            self.init(name, &[], DataType::Uint8, vec![v])
        }
    }

    fn init_i8(&mut self, name: &str, dims: &[usize], v: &[i8]) -> String {
        self.init(name, dims, DataType::Int8, v.iter().map(|&x| x as u8).collect())
    }

    fn init_i32(&mut self, name: &str, dims: &[usize], v: &[i32]) -> String {
        self.init(name, dims, DataType::Int32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn conv_attrs(l: &ConvLayer) -> Vec<pb::AttributeProto> {
        let k = [l.shape[2] as i64, l.shape[3] as i64];
        let p = l.pad as i64;
        let s = l.stride as i64;
        let mut attrs = vec![
            attr_ints("kernel_shape", &k),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("strides", &[s, s]),
        ];
        if l.groups > 1 {
            attrs.push(attr_i("group", l.groups as i64));
        }
        attrs
    }

    /// [`crate::model::blur_subsample`] of `channels` planes as a fixed depthwise convolution
    /// (f32), `x -> out`.
    fn blur_subsample(&mut self, x: Act, out: &str, channels: usize, q: Option<&Quant>) -> Act {
        let xf = self.dequant(x, q);
        let l = ConvLayer {
            shape: [channels, 1, 3, 3],
            weight: blur_weights(channels),
            bias: vec![0.0; channels],
            transpose: false,
            stride: 2,
            pad: 1,
            groups: channels,
        };
        self.conv_f32(&xf, &l, out);
        Act::F32(out.to_owned())
    }

    /// A float convolution (or transposed convolution) `x -> out`.
    fn conv_f32(&mut self, x: &str, l: &ConvLayer, out: &str) {
        let w = self.init_f32(&format!("{out}_w"), &l.shape, &l.weight);
        let b = self.init_f32(&format!("{out}_b"), &[l.bias.len()], &l.bias);
        let op = if l.transpose { "ConvTranspose" } else { "Conv" };
        self.node(op, &[x, &w, &b], &[out], Self::conv_attrs(l));
    }

    fn max_pool(&mut self, x: Act, out: &str) -> Act {
        let attrs = vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])];
        match x {
            Act::F32(name) => {
                self.node("MaxPool", &[&name], &[out], attrs);
                Act::F32(out.to_owned())
            }
            Act::U8 { name, scale, zp, scale_v } => {
                let o = format!("{out}_q");
                self.node("MaxPool", &[&name], &[&o], attrs);
                Act::U8 { name: o, scale, zp, scale_v }
            }
        }
    }

    fn quantize(&mut self, x: &str, range: (f32, f32), signed: bool) -> Act {
        let (s, z) = uint8_params(range);
        let scale = self.init_f32(&format!("{x}_scale"), &[], &[s]);
        let zp = self.init_zp(&format!("{x}_zp"), z, signed);
        let name = format!("{x}_q");
        self.node("QuantizeLinear", &[x, &scale, &zp], &[&name], vec![]);
        Act::U8 { name, scale, zp, scale_v: s }
    }

    /// The float tensor of an activation (a DequantizeLinear where it is uint8).
    fn dequant(&mut self, x: Act, _q: Option<&Quant>) -> String {
        match x {
            Act::F32(name) => name,
            Act::U8 { name, scale, zp, .. } => {
                let out = format!("{name}_dq");
                self.node("DequantizeLinear", &[&name, &scale, &zp], &[&out], vec![]);
                out
            }
        }
    }

    /// Int8 symmetric weights and their scales (one, or one per output channel).
    fn weights_i8(l: &ConvLayer, per: WeightScales) -> (Vec<i8>, Vec<f32>) {
        let cout = l.shape[0];
        let n = l.weight.len() / cout;
        let absmax = |s: &[f32]| s.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let scales: Vec<f32> = match per {
            WeightScales::PerTensor => vec![absmax(&l.weight) / 127.0],
            WeightScales::PerChannel => l.weight.chunks(n).map(|c| absmax(c) / 127.0).collect(),
        };
        let q = l
            .weight
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s = scales[if scales.len() == 1 { 0 } else { i / n }];
                (v / s).round().clamp(-127.0, 127.0) as i8
            })
            .collect();
        (q, scales)
    }

    /// Conv + ReLU named `out` in the given form (f32 wherever there are no ranges).
    fn conv_relu(
        &mut self,
        x: Act,
        l: &ConvLayer,
        out: &str,
        q: Option<&Quant>,
        form: Form,
    ) -> Result<Act, String> {
        self.conv_act(x, l, out, Activation::Relu, q, form)
    }

    /// Conv and `act` named `out` in the given form (f32 wherever there are no ranges).
    fn conv_act(
        &mut self,
        x: Act,
        l: &ConvLayer,
        out: &str,
        act: Activation,
        q: Option<&Quant>,
        form: Form,
    ) -> Result<Act, String> {
        match (form, q) {
            (Form::F32, _) | (_, None) => Ok(self.conv_act_f32(x, l, out, act, q)),
            (Form::Qdq, Some(q)) => self.conv_act_qdq(x, l, out, act, q),
            (Form::QLinear, Some(q)) if act == Activation::Relu => {
                self.conv_relu_qlinear(x, l, out, q)
            }
            (Form::QLinear, Some(_)) => Err(format!("{out}: QLinear covers Conv + ReLU only")),
        }
    }

    /// The activation `act` of the convolution output `pre`, named `out` (`pre` is `out`
    /// itself when linear).
    fn activate(&mut self, pre: &str, out: &str, act: Activation) {
        match act {
            Activation::Relu => self.node("Relu", &[pre], &[out], vec![]),
            Activation::Relu6 => {
                let lo = self.init_f32(&format!("{out}_min"), &[], &[0.0]);
                let hi = self.init_f32(&format!("{out}_max"), &[], &[6.0]);
                self.node("Clip", &[pre, &lo, &hi], &[out], vec![]);
            }
            Activation::Linear => debug_assert_eq!(pre, out, "a linear conv writes its output"),
        }
    }

    /// The name a convolution writes before `act` makes `out` of it.
    fn pre_activation(out: &str, act: Activation) -> String {
        if act == Activation::Linear { out.to_owned() } else { format!("{out}_conv") }
    }

    /// Conv + `act` in f32 (an 8-bit input is dequantized first).
    fn conv_act_f32(
        &mut self,
        x: Act,
        l: &ConvLayer,
        out: &str,
        act: Activation,
        q: Option<&Quant>,
    ) -> Act {
        let xf = self.dequant(x, q);
        let pre = Self::pre_activation(out, act);
        self.conv_f32(&xf, l, &pre);
        self.activate(&pre, out, act);
        Act::F32(out.to_owned())
    }

    /// Conv + ReLU as onnxruntime's QDQ pattern: the input through a QuantizeLinear /
    /// DequantizeLinear pair at its calibrated range, int8 weights behind a DequantizeLinear,
    /// then a float Conv and Relu.
    fn conv_act_qdq(
        &mut self,
        x: Act,
        l: &ConvLayer,
        out: &str,
        act: Activation,
        q: &Quant,
    ) -> Result<Act, String> {
        let xf = self.dequant(x, Some(q));
        let (s, z) = uint8_params(q.range(&xf)?);
        let scale = self.init_f32(&format!("{out}_xs"), &[], &[s]);
        let zp = self.init_zp(&format!("{out}_xzp"), z, q.signed);
        let (xq, xdq) = (format!("{out}_xq"), format!("{out}_xdq"));
        self.node("QuantizeLinear", &[&xf, &scale, &zp], &[&xq], vec![]);
        self.node("DequantizeLinear", &[&xq, &scale, &zp], &[&xdq], vec![]);
        let (wqn, wsn, ws) = self.int8_weights(l, out, q.weights);
        let wdq = format!("{out}_wdq");
        // Per-channel scales run along the output channels; a per-tensor one is a scalar.
        let attrs = if ws.len() > 1 { vec![attr_i("axis", 0)] } else { vec![] };
        self.node("DequantizeLinear", &[&wqn, &wsn], &[&wdq], attrs);
        let b = self.init_f32(&format!("{out}_b"), &[l.bias.len()], &l.bias);
        let pre = Self::pre_activation(out, act);
        self.node("Conv", &[&xdq, &wdq, &b], &[&pre], Self::conv_attrs(l));
        self.activate(&pre, out, act);
        Ok(Act::F32(out.to_owned()))
    }

    /// Conv + ReLU as one `QLinearConv` on 8-bit activations: int32 bias at the input scale
    /// times the weights', and the ReLU folded into the output's zero point.
    fn conv_relu_qlinear(
        &mut self,
        x: Act,
        l: &ConvLayer,
        out: &str,
        q: &Quant,
    ) -> Result<Act, String> {
        let quantized = match x {
            Act::F32(name) => {
                let r = q.range(&name)?;
                self.quantize(&name, r, q.signed)
            }
            u8 => u8,
        };
        let Act::U8 { name, scale, zp, scale_v } = quantized else {
            unreachable!("quantized above")
        };
        let (wqn, wsn, ws) = self.int8_weights(l, out, q.weights);
        let wzp_dims: &[usize] = if ws.len() == 1 { &[] } else { &[ws.len()] };
        let wzp = self.init(&format!("{out}_wzp"), wzp_dims, DataType::Int8, vec![0; ws.len()]);
        let bias: Vec<i32> = l
            .bias
            .iter()
            .enumerate()
            .map(|(c, b)| {
                let s = scale_v * ws[if ws.len() == 1 { 0 } else { c }];
                (b / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32
            })
            .collect();
        let bn = self.init_i32(&format!("{out}_bq"), &[bias.len()], &bias);
        // ReLU: the output's zero point 0 saturates every negative value to 0.
        let (_, max) = q.range(out)?;
        let ys = (max / 255.0).max(1e-8);
        let ysn = self.init_f32(&format!("{out}_scale"), &[], &[ys]);
        let yzp = self.init_zp(&format!("{out}_zp"), 0, q.signed);
        let yq = format!("{out}_q");
        self.node(
            "QLinearConv",
            &[&name, &scale, &zp, &wqn, &wsn, &wzp, &ysn, &yzp, &bn],
            &[&yq],
            Self::conv_attrs(l),
        );
        Ok(Act::U8 { name: yq, scale: ysn, zp: yzp, scale_v: ys })
    }

    /// Layer `out`'s int8 weights and their scales as initialisers (the scales a scalar for one,
    /// a vector per output channel): their names, and the scales.
    fn int8_weights(
        &mut self,
        l: &ConvLayer,
        out: &str,
        per: WeightScales,
    ) -> (String, String, Vec<f32>) {
        let (wq, ws) = Self::weights_i8(l, per);
        let wqn = self.init_i8(&format!("{out}_wq"), &l.shape, &wq);
        let dims: &[usize] = if ws.len() == 1 { &[] } else { &[ws.len()] };
        let wsn = self.init_f32(&format!("{out}_ws"), dims, &ws);
        (wqn, wsn, ws)
    }
}

fn tensor_type(shape: Option<Vec<pb::tensor_shape_proto::Dimension>>) -> pb::TypeProto {
    pb::TypeProto {
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: DataType::Float as i32,
            shape: shape.map(|dim| pb::TensorShapeProto { dim }),
        })),
        ..Default::default()
    }
}

fn value_info(name: &str, channels: usize, o: &GraphOptions) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let d = |v: usize| Dimension { value: Some(Value::DimValue(v as i64)), ..Default::default() };
    let batch = Dimension { value: Some(Value::DimParam("N".into())), ..Default::default() };
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(tensor_type(Some(vec![batch, d(channels), d(o.height), d(o.width)]))),
        ..Default::default()
    }
}

fn attr(name: &str, t: pb::attribute_proto::AttributeType) -> pb::AttributeProto {
    pb::AttributeProto { name: name.to_owned(), r#type: t as i32, ..Default::default() }
}

fn attr_i(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto { i: v, ..attr(name, pb::attribute_proto::AttributeType::Int) }
}

fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto { ints: v.to_vec(), ..attr(name, pb::attribute_proto::AttributeType::Ints) }
}

fn attr_s(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        s: v.as_bytes().to_vec(),
        ..attr(name, pb::attribute_proto::AttributeType::String)
    }
}
