#!/usr/bin/env python3
"""Operators ONNX has no node test for, checked against ONNX Runtime on random inputs.

    test_vs_ort.py FLAGOS_BINARY WORK_DIR

Each case builds a one-node model, runs it through `flagos run` and through ONNX
Runtime on the same inputs, and compares (rtol 1e-5, atol 1e-6 for float32).
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def maxroipool_cases(rng):
    for t in range(6):
        x = rng.standard_normal((2, 3, 13, 11)).astype(np.float32)
        rois = np.zeros((5, 5), np.float32)
        rois[:, 0] = rng.integers(0, 2, 5)
        rois[:, 1:3] = rng.uniform(-4, 20, (5, 2))           # may start outside the image
        rois[:, 3:5] = rois[:, 1:3] + rng.uniform(0, 15, (5, 2))
        node = helper.make_node("MaxRoiPool", ["X", "rois"], ["Y"], pooled_shape=[3, 2 + t % 3],
                                spatial_scale=[1.0, 0.5, 0.7][t % 3])
        yield f"maxroipool_{t}", node, {"X": x, "rois": rois}


def run_case(flagos, work, name, node, inputs):
    g = helper.make_graph([node], name,
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inputs.items()],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    onnx.save(m, path)
    args = [flagos, "run", path, "--output-dir", os.path.join(d, "out")]
    for k, v in inputs.items():
        np.save(os.path.join(d, k + ".npy"), v)
        args += ["--input", f"{k}={os.path.join(d, k + '.npy')}"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        return f"flagos failed: {r.stderr.strip()}"
    ref = ort.InferenceSession(path).run(None, inputs)
    for o, want in zip(node.output, ref):
        got = np.load(os.path.join(d, "out", o + ".npy"))
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            return f"output {o} differs: max abs {np.abs(got - want).max() if got.shape == want.shape else 'shape'}"
    return None


def main():
    flagos, work = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(11)
    passed = failed = 0
    for name, node, inputs in maxroipool_cases(rng):
        err = run_case(flagos, work, name, node, inputs)
        if err:
            print(f"FAIL {name}: {err}")
            failed += 1
        else:
            passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
