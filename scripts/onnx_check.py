#!/usr/bin/env python3
"""Independent check of a Papilla ONNX export: the `onnx` checker (full, with shape
inference) and onnxruntime on the same input tract saw.

usage: onnx_check.py MODEL.onnx INPUT.f32 TRACT_OUT.f32 N C H W

INPUT.f32 and TRACT_OUT.f32 are raw little-endian float32 in NCHW order; the output has the
model's class count in place of C. Prints one JSON object: the opset, the operators used, the
largest absolute difference between onnxruntime and tract, the logit range, and the fraction
of pixels whose argmax class agrees.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model_path, input_path, tract_path = sys.argv[1:4]
    n, c, h, w = (int(v) for v in sys.argv[4:8])
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    ops = sorted({node.op_type for node in model.graph.node})
    domains = sorted({node.domain for node in model.graph.node})
    x = np.fromfile(input_path, dtype="<f4").reshape(n, c, h, w)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    (ours,) = sess.run(["logits"], {"input": x})
    theirs = np.fromfile(tract_path, dtype="<f4").reshape(ours.shape)
    diff = float(np.max(np.abs(ours - theirs)))
    agree = float(np.mean(np.argmax(ours, axis=1) == np.argmax(theirs, axis=1)))
    print(json.dumps({
        "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0],
        "ops": ops,
        "domains": domains,
        "max_abs_diff": diff,
        "logit_range": float(ours.max() - ours.min()),
        "argmax_agreement": agree,
        "metadata": {p.key: p.value for p in model.metadata_props},
    }))


if __name__ == "__main__":
    main()
