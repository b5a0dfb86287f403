#!/usr/bin/env python3
"""Median milliseconds per image of an ONNX model in onnxruntime (CPU), for the runtime bench.

usage: ort_bench.py MODEL.onnx THREADS RUNS N C H W
Prints one number (ms), or `n/a: reason` when onnxruntime cannot run the model.
"""
import sys
import time

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # the bench prints n/a instead of failing
    print(f"n/a: {e}")
    sys.exit(0)


def main():
    path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    shape = [int(v) for v in sys.argv[4:8]]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        print(f"n/a: {str(e).splitlines()[0][:80]}")
        return
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    for _ in range(2):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - t) * 1000)
    print(f"{sorted(times)[len(times) // 2]:.1f}")


if __name__ == "__main__":
    main()
