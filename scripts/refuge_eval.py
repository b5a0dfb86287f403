#!/usr/bin/env python3
"""Independent implementation of the REFUGE challenge's segmentation evaluation.

Written from the REFUGE evaluation definitions (Orlando et al., "REFUGE Challenge", Medical
Image Analysis 59, 2020, and the challenge's evaluation_metrics_for_segmentation.py) with numpy,
sharing no code with Papilla; Papilla's tests run it beside `papilla score` and require the
same numbers. Masks: 0 = cup, 128 = disc rim, 255 = background.

  python3 scripts/refuge_eval.py PRED_DIR TRUTH_DIR   # prints one JSON object

Requires numpy and Pillow (scripts/requirements-test.txt).
"""
import json
import os
import sys

import numpy as np
from PIL import Image

EPS = 1e-7


def dice_coefficient(binary_segmentation, binary_gt_label):
    binary_segmentation = np.asarray(binary_segmentation).astype(bool)
    binary_gt_label = np.asarray(binary_gt_label).astype(bool)
    intersection = np.logical_and(binary_segmentation, binary_gt_label)
    segmentation_pixels = float(np.sum(binary_segmentation.flatten()))
    gt_label_pixels = float(np.sum(binary_gt_label.flatten()))
    denominator = segmentation_pixels + gt_label_pixels
    if denominator == 0:  # both empty: the official script divides by zero; Papilla says 1
        return 1.0
    return 2 * float(np.sum(intersection.flatten())) / denominator


def vertical_diameter(binary_segmentation):
    binary_segmentation = np.asarray(binary_segmentation).astype(bool)
    vertical_axis_diameter = np.sum(binary_segmentation, axis=0)
    return float(np.max(vertical_axis_diameter))


def vertical_cup_to_disc_ratio(segmentation):
    cup_diameter = vertical_diameter(segmentation == 0)
    disc_diameter = vertical_diameter(segmentation < 255)
    return cup_diameter / (disc_diameter + EPS)


def load(path):
    a = np.asarray(Image.open(path))
    if a.ndim == 3:
        a = a[:, :, 0]
    return a


def main():
    pred_dir, truth_dir = sys.argv[1], sys.argv[2]
    names = sorted(f for f in os.listdir(truth_dir) if f.lower().endswith((".bmp", ".png")))
    images = []
    for f in names:
        stem = os.path.splitext(f)[0]
        gt = load(os.path.join(truth_dir, f))
        seg = load(os.path.join(pred_dir, stem + ".bmp"))
        vcdr = vertical_cup_to_disc_ratio(seg)
        vcdr_true = vertical_cup_to_disc_ratio(gt)
        images.append(
            {
                "name": stem,
                "disc_dice": dice_coefficient(seg < 255, gt < 255),
                "cup_dice": dice_coefficient(seg == 0, gt == 0),
                "vcdr": vcdr,
                "vcdr_true": vcdr_true,
                "vcdr_error": abs(vcdr - vcdr_true),
            }
        )
    n = len(images)
    out = {
        "n": n,
        "disc_dice": sum(i["disc_dice"] for i in images) / n,
        "cup_dice": sum(i["cup_dice"] for i in images) / n,
        "vcdr_mae": sum(i["vcdr_error"] for i in images) / n,
        "images": images,
    }
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
