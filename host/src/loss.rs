//! The training loss: soft Dice (per class, or nested disc and cup), cross-entropy, and a
//! term on the vertical cup-to-disc ratio as the REFUGE metric measures it.

use burn::tensor::{Device, Tensor, TensorData, activation};
use serde::{Deserialize, Serialize};

/// What the Dice part of the loss measures.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Soft Dice of each class (cup, rim, background) over the whole batch (the seed recipe).
    ClassDice,
    /// Soft Dice of the disc (cup + rim) and of the cup, per image, then averaged: the regions
    /// and the averaging the REFUGE metrics use, so a small cup counts as much as a large one.
    NestedDice,
}

/// One-hot targets in class-index order.
///
/// # Shapes
/// - returns `[N, classes, H, W]`
pub fn target_batch(
    targets: &[&papilla_shared::LabelMap],
    classes: usize,
    device: &Device,
) -> Tensor<4> {
    let (w, h) = (targets[0].width() as usize, targets[0].height() as usize);
    let plane = w * h;
    let mut data = vec![0f32; targets.len() * classes * plane];
    for (b, t) in targets.iter().enumerate() {
        for (p, c) in t.classes().iter().enumerate() {
            data[(b * classes + *c as usize) * plane + p] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(data, [targets.len(), classes, h, w]), device)
}

/// Soft Dice loss (smooth 1, as PaddleSeg's DiceLoss) of the regions `kind` names, plus
/// `ce_weight` times cross-entropy.
///
/// # Shapes
/// - `logits`, `onehot`: `[N, C, H, W]` -> scalar `[1]`; `NestedDice` needs the class order
///   cup, rim, background.
pub fn loss(logits: Tensor<4>, onehot: Tensor<4>, ce_weight: f64, kind: LossKind) -> Tensor<1> {
    loss_with_vcdr(logits, onehot, ce_weight, kind, 0.0)
}

/// The vertical cup-to-disc ratio as the REFUGE metric measures it (the largest count of cup,
/// and of disc, pixels in one column), from soft masks: per image, the largest column sum of
/// the cup's and of the disc's probability, and their ratio. Differentiable, so the network
/// is told directly when it draws a large cup short.
///
/// # Shapes
/// - `probs`: `[N, C, H, W]` in the class order cup, rim, background -> `[N]`.
pub fn soft_vcdr(probs: Tensor<4>) -> Tensor<1> {
    let n = probs.dims()[0];
    let cup = probs.clone().narrow(1, 0, 1).sum_dim(2).max_dim(3);
    let disc = probs.narrow(1, 0, 2).sum_dim(1).sum_dim(2).max_dim(3);
    (cup / (disc + 1.0)).reshape([n])
}

/// [`loss`] plus `vcdr_weight` times the mean absolute error of [`soft_vcdr`] against the
/// one-hot truth's.
pub fn loss_with_vcdr(
    logits: Tensor<4>,
    onehot: Tensor<4>,
    ce_weight: f64,
    kind: LossKind,
    vcdr_weight: f64,
) -> Tensor<1> {
    let probs = activation::softmax(logits.clone(), 1);
    let vcdr_probs = (vcdr_weight > 0.0).then(|| probs.clone());
    let soft_dice = |p: Tensor<4>, t: Tensor<4>, dims: &[usize]| {
        let inter = (p.clone() * t.clone()).sum_dims(dims);
        (inter * 2.0 + 1.0) / (p.sum_dims(dims) + t.sum_dims(dims) + 1.0)
    };
    let dice = match kind {
        LossKind::ClassDice => soft_dice(probs, onehot.clone(), &[0, 2, 3]).mean(),
        LossKind::NestedDice => {
            let disc = |x: Tensor<4>| x.narrow(1, 0, 2).sum_dim(1);
            let cup = |x: Tensor<4>| x.narrow(1, 0, 1);
            let d = soft_dice(disc(probs.clone()), disc(onehot.clone()), &[2, 3]);
            let c = soft_dice(cup(probs), cup(onehot.clone()), &[2, 3]);
            (d.mean() + c.mean()) / 2.0
        }
    };
    let mut total = dice.neg() + 1.0;
    if let Some(p) = vcdr_probs {
        let err = (soft_vcdr(p) - soft_vcdr(onehot.clone())).abs().mean();
        total = total + err * vcdr_weight;
    }
    if ce_weight > 0.0 {
        let ce = (activation::log_softmax(logits, 1) * onehot).sum_dim(1).mean().neg();
        total + ce * ce_weight
    } else {
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_loss_is_zero_for_a_confident_right_answer_and_high_for_a_wrong_one() {
        let device = Device::flex();
        let t = papilla_shared::LabelMap::filled(2, 2, papilla_shared::Class::Rim);
        let y = target_batch(&[&t], 3, &device);
        let right = y.clone() * 50.0;
        let wrong = y.clone().neg() * 50.0;
        let l_right = loss(right, y.clone(), 0.0, LossKind::ClassDice).into_scalar::<f32>();
        let l_wrong = loss(wrong, y, 1.0, LossKind::ClassDice).into_scalar::<f32>();
        // classes absent from the target give (0 + 1) / (0 + 1) = 1 with smooth 1
        assert!(l_right < 0.01, "{l_right}");
        assert!(l_wrong > 0.5, "{l_wrong}");
    }

    /// A 6x6 disc whose cup is a 2-wide column 4 pixels tall, against a prediction whose cup is
    /// 2 tall: the soft vCDR is the metric's ratio (smoothed by 1 in the disc), and the vCDR term
    /// adds exactly its weight times the error.
    #[test]
    fn soft_vcdr_counts_the_tallest_column_and_its_term_penalises_a_short_cup() {
        use papilla_shared::{Class, LabelMap};
        let device = Device::flex();
        let cup = |rows: std::ops::Range<u32>| {
            let mut m = LabelMap::filled(6, 6, Class::Rim);
            for y in rows {
                m.set(2, y, Class::Cup);
                m.set(3, y, Class::Cup);
            }
            m
        };
        let (truth, short) = (cup(1..5), cup(2..4));
        let y = target_batch(&[&truth], 3, &device);
        let v = soft_vcdr(y.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert!((v[0] - 4.0 / 7.0).abs() < 1e-5, "{v:?}");
        let logits = target_batch(&[&short], 3, &device) * 50.0;
        let plain = loss(logits.clone(), y.clone(), 0.0, LossKind::NestedDice).into_scalar::<f32>();
        let with = loss_with_vcdr(logits.clone(), y.clone(), 0.0, LossKind::NestedDice, 2.0)
            .into_scalar::<f32>();
        assert!((with - plain - 2.0 * (4.0 - 2.0) / 7.0).abs() < 1e-3, "{plain} {with}");
        let right = target_batch(&[&truth], 3, &device) * 50.0;
        let none = loss_with_vcdr(right, y, 0.0, LossKind::NestedDice, 2.0).into_scalar::<f32>();
        assert!(none < 0.01, "{none}");
    }

    /// Two 4x4 images: the first all cup, predicted right; the second with a one-pixel cup in
    /// its rim, predicted as rim. Over the batch the cup is nearly all right, per image half
    /// of the cups are missed.
    #[test]
    fn nested_dice_weighs_each_image_s_cup_the_same() {
        use papilla_shared::{Class, LabelMap};
        let device = Device::flex();
        let big = LabelMap::filled(4, 4, Class::Cup);
        let mut small = LabelMap::filled(4, 4, Class::Rim);
        small.set(1, 1, Class::Cup);
        let y = target_batch(&[&big, &small], 3, &device);
        let pred_small = LabelMap::filled(4, 4, Class::Rim);
        let logits = target_batch(&[&big, &pred_small], 3, &device) * 50.0;
        let class = loss(logits.clone(), y.clone(), 0.0, LossKind::ClassDice).into_scalar::<f32>();
        let nested = loss(logits, y, 0.0, LossKind::NestedDice).into_scalar::<f32>();
        // nested: disc right in both, cup 1 and 1/(1+1) (smooth 1) -> 1 - (1 + 0.75) / 2
        assert!((nested - 0.125).abs() < 1e-3, "{nested}");
        assert!(class < 0.06, "{class}");
    }

    #[test]
    fn nested_dice_scores_the_disc_right_when_only_the_cup_is_wrong() {
        use papilla_shared::{Class, LabelMap};
        let device = Device::flex();
        let t = LabelMap::filled(2, 2, Class::Rim);
        let y = target_batch(&[&t], 3, &device);
        let swapped = target_batch(&[&LabelMap::filled(2, 2, Class::Cup)], 3, &device) * 50.0;
        let nested = loss(swapped, y, 0.0, LossKind::NestedDice).into_scalar::<f32>();
        // the disc is right; the cup is 4 px where none is: 1 - (1 + 1/5) / 2
        assert!((nested - 0.4).abs() < 1e-3, "{nested}");
    }
}
