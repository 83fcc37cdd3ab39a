#!/usr/bin/env python3
"""Norm fusion (src/passes/fuse_norm.c, src/ops/product_norm.c) and the opencl
plugin's "gemm_norm" call (backends/opencl/ocl_gemm.c), against NumPy in
float64.

    test_norm.py FLAGOS_BINARY WORK_DIR

Models, built here with onnx's helper, as GPT-2 and BERT close a block: a
product with a bias, a residual Add of its output and the LayerNormalization
(last axis) of the sum:
- `gpt2`: Gemm [M, K] x [K, N] + bias, Reshape to [1, M, N] (the view the
  exporters write), the sum also read later (the next residual: the fused
  node has two outputs);
- `bert`: MatMul [1, M, K] x [K, N] then Add of the bias (MatMulBias), the sum
  read by the LayerNormalization alone (one output), the LayerNormalization
  without its bias input;
- `f16`: `gpt2` in float16 (tolerance 5e-3 relative to the output's range);
- `shared`: the product's output also a graph output: no fused node, the
  outputs still match;
- `axis1`: `gpt2` with the LayerNormalization over axes 1 and 2 of the
  [1, M, N] sum (axis=1, its scale and bias of N values broadcast): not rows
  of the product (axis 1 is the product's last but not the sum's), no fused
  node.
N = 200 leaves a partial last group of the row kernel and rows that are not
whole float4 runs. Each is compiled for cpu and opencl with
FLAGOS_FUSE_TRACE=1, which must report one fused node (none for `shared`), and
run on the cpu (the call declined: the nodes' kernels) and, where `flagos
devices` lists an OpenCL device (PoCL in CI), on opencl with our gemm kernels
(FLAGOS_OPENCL_GEMM=1 FLAGOS_OPENCL_BLAS=1): the product over 4 K slices
summed, added and normalised in one kernel (FLAGOS_TRACE=1 must show
"gemm_norm planned" lines), unsplit (the row kernel reading the product), the
call off (FLAGOS_OPENCL_NORM=0: no gemm_norm line) and our gemm off (none).
Exit 0 when everything matched, 1 otherwise, 77 (skipped) without numpy or
onnx.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusion_cli import has_opencl, input_args, run, run_bundle  # noqa: E402

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # test-only Python packages (scripts/setup.sh)
    print("skipped: %s" % e)
    sys.exit(77)

M, K, N = 48, 96, 200
EPS = 1e-5


def model(kind, rng):
    f16 = kind == "f16"
    dt, npdt = (TensorProto.FLOAT16, np.float16) if f16 else (TensorProto.FLOAT, np.float32)
    w = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(npdt)
    b = rng.standard_normal(N).astype(npdt)
    axis1 = kind == "axis1"
    nshape = (N,)
    gamma = (1 + 0.1 * rng.standard_normal(nshape)).astype(npdt)
    beta = (0.1 * rng.standard_normal(nshape)).astype(npdt)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(beta, "beta"),
             numpy_helper.from_array(np.array([1, M, N], np.int64), "shp")]
    n = helper.make_node
    bert = kind == "bert"
    if bert:
        nodes = [n("MatMul", ["x", "w"], ["p"]), n("Add", ["p", "b"], ["pb"]), n("Add", ["pb", "r"], ["s"]),
                 n("LayerNormalization", ["s", "gamma"], ["z"], axis=-1, epsilon=EPS)]
        outs = ["z"]
    else:
        nodes = [n("Gemm", ["x", "w", "b"], ["p"]), n("Reshape", ["p", "shp"], ["pb"]), n("Add", ["pb", "r"], ["s"]),
                 n("LayerNormalization", ["s", "gamma", "beta"], ["z"], axis=1 if axis1 else -1, epsilon=EPS),
                 n("Mul", ["s", "z"], ["y"])]
        outs = ["y"] + (["p"] if kind == "shared" else [])
    xshape = [1, M, K] if bert else [M, K]
    ins = [helper.make_tensor_value_info("x", dt, xshape), helper.make_tensor_value_info("r", dt, [1, M, N])]
    shapes = {"z": [1, M, N], "y": [1, M, N], "p": [M, N]}
    g = helper.make_graph(nodes, "norm_" + kind, ins, [helper.make_tensor_value_info(o, dt, shapes[o]) for o in outs],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    feeds = {"x": rng.standard_normal(xshape).astype(npdt), "r": rng.standard_normal((1, M, N)).astype(npdt)}
    # the reference in float64 from the same (rounded) values
    x, r = (feeds[k].astype(np.float64) for k in ("x", "r"))
    s = (x.reshape(M, K) @ w.astype(np.float64) + b.astype(np.float64)).reshape(1, M, N) + r
    axes = (1, 2) if axis1 else -1
    mu = s.mean(axes, keepdims=True)
    var = ((s - mu) ** 2).mean(axes, keepdims=True)
    z = (s - mu) / np.sqrt(var + EPS) * gamma.astype(np.float64) + (0 if bert else beta.astype(np.float64))
    ref = {"z": z, "y": s * z}
    if kind == "shared":
        ref["p"] = s.reshape(M, N) - r.reshape(M, N)
    return m, npdt, feeds, {o: ref[o] for o in outs}



def main():
    flagos, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    opencl = has_opencl(flagos)
    failed = 0
    rng = np.random.default_rng(11)
    for kind in ("gpt2", "bert", "f16", "shared", "axis1"):
        m, npdt, feeds, ref = model(kind, rng)
        path = os.path.join(work, kind + ".onnx")
        onnx.save(m, path)
        args = input_args(work, kind, feeds)
        bundle = os.path.join(work, kind + ".flagos")
        c = run([flagos, "compile", path, "--target", "cpu,opencl", "-o", bundle], {"FLAGOS_FUSE_TRACE": "1"})
        want = 0 if kind in ("shared", "axis1") else 1
        got = c.stderr.count("residual Add and LayerNormalization as its epilogue")
        if c.returncode != 0 or got != want:
            print("FAIL %s: compile exit %d, %d fused node(s), want %d\n%s" % (kind, c.returncode, got, want, c.stderr))
            failed += 1
            continue
        runs = [("cpu", {}, 0)]
        if opencl:
            ours = {"FLAGOS_OPENCL_GEMM": "1", "FLAGOS_OPENCL_BLAS": "1"}
            runs += [("opencl", dict(ours, FLAGOS_OPENCL_SPLITK="4"), want),
                     ("opencl", dict(ours, FLAGOS_OPENCL_SPLITK="1"), want),
                     ("opencl", dict(ours, FLAGOS_OPENCL_SPLITK="4", FLAGOS_OPENCL_NORM="0"), 0),
                     ("opencl", {"FLAGOS_OPENCL_GEMM": "0"}, 0)]
        else:
            print("skipped %s on opencl: no OpenCL device" % kind)
        tol = 5e-3 if npdt == np.float16 else 2e-5
        for i, (dev, env, calls) in enumerate(runs):
            out = os.path.join(work, "out_%s_%s_%d" % (kind, dev, i))
            r, label = run_bundle(flagos, bundle, kind, dev, env, out, args)
            if r.returncode != 0:
                failed += 1
                continue
            took = r.stderr.count("gemm_norm planned")
            worst = 0.0
            for o, want_v in ref.items():
                y = np.load(os.path.join(out, o + ".npy")).astype(np.float64)
                if y.shape != want_v.shape:
                    worst = float("inf")
                    break
                worst = max(worst, float(np.abs(y - want_v).max() / max(1.0, np.abs(want_v).max())))
            if worst > tol or (took > 0) != (calls > 0):
                print("FAIL %s: max error %.3g (tolerance %g), gemm_norm plans %d (want %s)" %
                      (label, worst, tol, took, "some" if calls else "none"))
                failed += 1
            else:
                print("ok %s: max error %.3g, gemm_norm plans %d" % (label, worst, took))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
