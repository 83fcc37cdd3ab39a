#!/usr/bin/env python3
"""Activation fusion (src/passes/fuse_activation.c, src/ops/product_act.c) and
the opencl plugin's gemm and conv calls with an activation (the calls' last
int, docs/kernel-ir.md), against NumPy in float64.

    test_activation.py FLAGOS_BINARY WORK_DIR

Models, built here with onnx's helper, each a product and what reads it:
- `gelu_erf`: MatMul + Add of a bias, then GELU as BERT's legacy export writes
  it (Div by sqrt(2), Erf, Add 1, Mul by x, Mul by 0.5); 136 columns (the
  vector kernel);
- `gelu_tanh`: Gemm (transB, a bias C) then GELU's tanh form as GPT-2 writes
  it (Pow 3, Mul, Add, Mul, Tanh, Add, Mul, Mul); 130 columns (the general
  kernel);
- `gelu_f16`: MatMul + Add, then ONNX's Gelu (opset 20), in float16;
- `gelu_view`: as PyTorch's dynamo exporter writes GPT-2's feed-forward layer:
  the input reshaped to 2-D, Gemm, the output reshaped back, then the tanh
  form (the pass moves the view after the fused node);
- `relu_conv`: Conv 3x3 with a bias and padding, then Relu;
- `relu_pw`: a pointwise Conv without bias, then Relu (the product's one
  kernel carries a plain gemm call);
- `split`: `gelu_erf` with 4 rows and K 1024, run on opencl with its K split
  in 4 slices, summed by a second kernel and in the product's kernel;
- `silu`: MatMul + Add then x * Sigmoid(x): no fusion;
- `shared`: MatMul + Add, its output a graph output too, then Relu: no fusion.
Each is compiled for cpu and opencl with FLAGOS_FUSE_TRACE=1, which must report
one activation epilogue (none for silu and shared), then run on the cpu (the
activation call declined: the product's call, then the activation's kernel)
and, where `flagos devices` lists an OpenCL device (PoCL in CI), on opencl
with our gemm kernels (FLAGOS_OPENCL_GEMM=1: FLAGOS_TRACE=1 must show the call
with the activation), with them but the activation declined
(FLAGOS_OPENCL_ACTIVATION=0: the product's call taken, which then skips the
product's other kernels but not the activation's), and without them
(FLAGOS_OPENCL_GEMM=0: none); f16 also with the tensor-core kernel emulated. Exit 0 when everything matched, 1
otherwise, 77 (skipped) without numpy or onnx.
"""
import math
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

ERF = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1 + ERF(x / math.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def conv2d(x, w, b, pad):
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    y = np.zeros((n, m, oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nchw,mc->nmhw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return y + (b.reshape(1, m, 1, 1) if b is not None else 0)


def model(kind, rng):
    """(onnx model, feeds, float64 reference of y, dtype, fused nodes wanted)."""
    f16 = kind == "gelu_f16"
    dt, npdt = (TensorProto.FLOAT16, np.float16) if f16 else (TensorProto.FLOAT, np.float32)
    n = helper.make_node
    c = lambda name, v: numpy_helper.from_array(np.array(v, npdt), name)
    S, K, N = (4, 1024, 64) if kind == "split" else (70, 96, 130 if kind == "gelu_tanh" else 136)
    outs = ["y"]
    opset = 20 if f16 else 17
    if kind in ("relu_conv", "relu_pw"):
        pw = kind == "relu_pw"
        xs, ws = (2, 5, 9, 11), (6, 5, 1, 1) if pw else (7, 5, 3, 3)
        x = rng.standard_normal(xs).astype(npdt)
        w = (rng.standard_normal(ws) / 4).astype(npdt)
        b = None if pw else rng.standard_normal(ws[0]).astype(npdt)
        inits = [numpy_helper.from_array(w, "w")] + ([] if pw else [numpy_helper.from_array(b, "b")])
        nodes = [n("Conv", ["x", "w"] + ([] if pw else ["b"]), ["h"], pads=[0, 0, 0, 0] if pw else [1, 1, 1, 1]),
                 n("Relu", ["h"], ["y"])]
        ref = np.maximum(conv2d(x.astype(np.float64), w.astype(np.float64),
                                None if pw else b.astype(np.float64), 0 if pw else 1), 0)
        ys = list(ref.shape)
        feeds = {"x": x}
        ins = [helper.make_tensor_value_info("x", dt, list(xs))]
        want = 1
    else:
        gemm = kind in ("gelu_tanh", "gelu_view")
        view = kind == "gelu_view"
        xs = [S, K] if kind == "gelu_tanh" else [1, S, K]
        x = rng.standard_normal(xs).astype(npdt)
        w = (rng.standard_normal((N, K) if gemm else (K, N)) / math.sqrt(K) * 2).astype(npdt)
        b = rng.standard_normal(N).astype(npdt)
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        if view:
            inits += [numpy_helper.from_array(np.array([S, K], np.int64), "s2"),
                      numpy_helper.from_array(np.array([1, S, N], np.int64), "s3")]
            nodes = [n("Reshape", ["x", "s2"], ["x2"]), n("Gemm", ["x2", "w", "b"], ["g"], transB=1),
                     n("Reshape", ["g", "s3"], ["h"])]
            h = x.astype(np.float64).reshape(S, K) @ w.astype(np.float64).T + b
            h = h.reshape(1, S, N)
        elif gemm:
            nodes = [n("Gemm", ["x", "w", "b"], ["h"], transB=1)]
            h = x.astype(np.float64) @ w.astype(np.float64).T + b
        else:
            nodes = [n("MatMul", ["x", "w"], ["p"]), n("Add", ["p", "b"], ["h"])]
            h = x.astype(np.float64) @ w.astype(np.float64) + b
        if kind in ("gelu_erf", "split"):
            inits += [c("sqrt2", 1.4142135381698608), c("one", 1.0), c("half", 0.5)]
            nodes += [n("Div", ["h", "sqrt2"], ["d"]), n("Erf", ["d"], ["e"]), n("Add", ["e", "one"], ["e1"]),
                      n("Mul", ["h", "e1"], ["m"]), n("Mul", ["m", "half"], ["y"])]
            ref = gelu(h)
        elif kind in ("gelu_tanh", "gelu_view"):
            inits += [c("three", 3.0), c("k", 0.044715), c("s", math.sqrt(2 / math.pi)), c("one", 1.0), c("half", 0.5)]
            nodes += [n("Mul", ["h", "half"], ["hh"]), n("Pow", ["h", "three"], ["h3"]), n("Mul", ["h3", "k"], ["h3k"]),
                      n("Add", ["h", "h3k"], ["u"]), n("Mul", ["u", "s"], ["us"]), n("Tanh", ["us"], ["t"]),
                      n("Add", ["t", "one"], ["t1"]), n("Mul", ["hh", "t1"], ["y"])]
            ref = gelu_tanh(h)
        elif kind == "gelu_f16":
            nodes += [n("Gelu", ["h"], ["y"])]
            ref = gelu(h)
        elif kind == "silu":
            nodes += [n("Sigmoid", ["h"], ["sg"]), n("Mul", ["h", "sg"], ["y"])]
            ref = h / (1 + np.exp(-h))
        else:  # shared
            nodes += [n("Relu", ["h"], ["y"])]
            ref = np.maximum(h, 0)
            outs.append("h")
        ys = list(ref.shape)
        feeds = {"x": x}
        ins = [helper.make_tensor_value_info("x", dt, xs)]
        want = 0 if kind in ("silu", "shared") else 1
    ovi = [helper.make_tensor_value_info(o, dt, ys) for o in outs]
    g = helper.make_graph(nodes, "act_" + kind, ins, ovi, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    onnx.checker.check_model(m)
    return m, feeds, ref, npdt, want



def act_calls(stderr):
    """Lines of FLAGOS_TRACE where our gemm or conv kernels ran a call with an activation."""
    lines = [l for l in stderr.splitlines() if "opencl gemm" in l or "opencl conv" in l]
    return sum(1 for l in lines if any(w in l for w in (" gelu,", " gelu-tanh,", " relu,", ", gelu", ", relu")))


def main():
    flagos, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    opencl = has_opencl(flagos)
    failed = 0
    rng = np.random.default_rng(11)
    for kind in ("gelu_erf", "gelu_tanh", "gelu_f16", "gelu_view", "relu_conv", "relu_pw", "split", "silu", "shared"):
        m, feeds, ref, npdt, want = model(kind, rng)
        path = os.path.join(work, kind + ".onnx")
        onnx.save(m, path)
        args = input_args(work, kind, feeds)
        bundle = os.path.join(work, kind + ".flagos")
        c = run([flagos, "compile", path, "--target", "cpu,opencl", "-o", bundle], {"FLAGOS_FUSE_TRACE": "1"})
        got = c.stderr.count("as its epilogue")
        if c.returncode != 0 or got != want:
            print("FAIL %s: compile exit %d, %d activation epilogue(s), want %d\n%s" %
                  (kind, c.returncode, got, want, c.stderr))
            failed += 1
            continue
        runs = [("cpu", {}, 0)]
        if opencl:
            ours = {"FLAGOS_OPENCL_GEMM": "1", "FLAGOS_OPENCL_BLAS": "1"}
            if kind == "split":
                runs += [("opencl", dict(ours, FLAGOS_OPENCL_SPLITK="4", FLAGOS_OPENCL_SPLIT_SUM="0"), want),
                         ("opencl", dict(ours, FLAGOS_OPENCL_SPLITK="4", FLAGOS_OPENCL_SPLIT_SUM="1"), want)]
            else:
                runs += [("opencl", ours, want)]
            if kind == "gelu_f16":
                runs += [("opencl", dict(ours, FLAGOS_OPENCL_TENSOR="emulate"), want)]
            # the activation declined, the product's call taken: the runtime skips the
            # product's other kernels, not the activation's
            runs += [("opencl", dict(ours, FLAGOS_OPENCL_ACTIVATION="0"), 0), ("opencl", {"FLAGOS_OPENCL_GEMM": "0"}, 0)]
        else:
            print("skipped %s on opencl: no OpenCL device" % kind)
        tol = 4e-3 if npdt == np.float16 else 2e-5
        for i, (dev, env, calls) in enumerate(runs):
            out = os.path.join(work, "out_%s_%s_%d" % (kind, dev, i))
            r, label = run_bundle(flagos, bundle, kind, dev, env, out, args)
            if r.returncode != 0:
                failed += 1
                continue
            y = np.load(os.path.join(out, "y.npy")).astype(np.float64)
            err = float(np.max(np.abs(y - ref) / (1 + np.abs(ref)))) if y.shape == ref.shape else float("inf")
            took = act_calls(r.stderr)
            # with FLAGOS_OPENCL_ACTIVATION=0 the product's call itself must have been taken
            products = sum(1 for l in r.stderr.splitlines() if "opencl gemm" in l or "opencl conv" in l)
            skipped = "FLAGOS_OPENCL_ACTIVATION" in env and want and products == 0
            if not err <= tol or (took > 0) != (calls > 0) or skipped:
                print("FAIL %s: error %.3g (tolerance %g), calls with an activation %d (want %s), product calls %d" %
                      (label, err, tol, took, "some" if calls else "none", products))
                failed += 1
            else:
                print("ok %s: error %.3g, calls with an activation %d" % (label, err, took))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
