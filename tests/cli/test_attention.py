#!/usr/bin/env python3
"""Attention fusion (src/passes/fuse_attention.c, src/ops/attention_fused.c)
and the opencl plugin's "attention" call (backends/opencl/ocl_attention.c),
against ONNX Runtime.

    test_attention.py FLAGOS_BINARY WORK_DIR

Models, built here with onnx's helper, as PyTorch's exporters write one
attention layer: query, key and value [1, S, H*D] reshaped to heads and
transposed, query and key each scaled by D^-1/4, the scores' product, an
additive mask computed once by Where(keep, 0, -inf) from a bool input (also a
graph output, as a mask that every layer reads), Softmax over the last axis,
the context product, transposed and reshaped back. One row of `keep` is all
False, so that row's softmax is NaN:
- `plain`: as above (that row's output is NaN, as ONNX Runtime's);
- `guard`: with PyTorch's guard Where(IsNaN(p), 0, p) after the softmax (the
  row is 0);
- `f16`: `guard` in float16 (tolerance 2e-3);
- `axis2`: the softmax over axis 2 (not the keys): no attention node forms,
  the outputs still match;
- `layouts`: keys given per head as (D, S), read as they lie, and values as
  (D, S) behind a Transpose, read transposed (the others read keys transposed
  and values as they lie);
- `qkv`: query, key and value the three parts of one input [1, S, 3*H*D]
  split along its last axis (GPT-2's merged product): the Split and its views
  join the attention node (the trace must say it reads the Split's input in
  place), the call reading its parts at offsets 0, H*D and 2*H*D, rows 3*H*D
  apart; `qkv_f16` the same with the guard in float16; `qkv_shared` with the
  key part also a graph output, so the Split stays a node of its own.
Sizes (70 rows and keys, 22 features, 3 heads) leave partial tiles, groups and
float4 padding in the opencl kernel; tiles of 64 keys
(FLAGOS_OPENCL_ATTENTION_TILE=64) make two tiles of 70 keys, one of them
partial.
Each is compiled for cpu and opencl with FLAGOS_FUSE_TRACE=1, which must report
one attention node (none for axis2), then run on the cpu (the call declined:
the three nodes' kernels) and, where `flagos devices` lists an OpenCL device
(PoCL in CI), on opencl four times: with the call (FLAGOS_OPENCL_ATTENTION=1;
FLAGOS_TRACE=1 must show "opencl attention" lines) in groups of 16 rows and
one tile, in tiles of 64 keys, in groups of 4 rows, and with the call off
(FLAGOS_OPENCL_ATTENTION=0: none). Exit 0
when everything matched, 1 otherwise, 77 (skipped) without numpy, onnx or
onnxruntime.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusion_cli import has_opencl, input_args, run, run_bundle  # noqa: E402

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # the references are test-only Python packages (scripts/setup.sh)
    print("skipped: %s" % e)
    sys.exit(77)

S, H, D = 70, 3, 22  # see the docstring: partial tiles, groups and padding
E = H * D


def in_shape(kind, x):
    if kind.startswith("qkv"):
        return [1, S, 3 * E]
    return [1, H, D, S] if kind == "layouts" and x != "q" else [1, S, E]


def inputs_of(kind):
    return "x" if kind.startswith("qkv") else "qkv"


def model(kind):
    f16 = kind in ("f16", "qkv_f16")
    dt, npdt = (TensorProto.FLOAT16, np.float16) if f16 else (TensorProto.FLOAT, np.float32)
    guard = kind in ("guard", "f16", "qkv_f16")
    inits = [numpy_helper.from_array(np.array([1, S, H, D], np.int64), "shp"),
             numpy_helper.from_array(np.array([1, S, E], np.int64), "shp2"),
             numpy_helper.from_array(np.array(D ** -0.25, npdt), "sc"),
             numpy_helper.from_array(np.array(0, npdt), "zero"),
             numpy_helper.from_array(np.array(-np.inf, npdt), "ninf"),
             numpy_helper.from_array(np.array([E, E, E], np.int64), "parts")]
    n = helper.make_node
    nodes = [n("Split", ["x", "parts"], ["q", "k", "v"], axis=2)] if kind.startswith("qkv") else []
    if kind == "layouts":  # keys given as (D, S) per head (read untransposed), values as (D, S) (read transposed)
        nodes += [n("Reshape", ["q", "shp"], ["qr"]), n("Transpose", ["qr"], ["qt"], perm=[0, 2, 1, 3]),
                 n("Identity", ["k"], ["kt"]), n("Transpose", ["v"], ["vt"], perm=[0, 1, 3, 2])]
    else:
        nodes += [n("Reshape", [x, "shp"], [x + "r"]) for x in "qkv"]
        nodes += [n("Transpose", ["qr"], ["qt"], perm=[0, 2, 1, 3]), n("Transpose", ["kr"], ["kt"], perm=[0, 2, 3, 1]),
                  n("Transpose", ["vr"], ["vt"], perm=[0, 2, 1, 3])]
    nodes += [n("Mul", ["qt", "sc"], ["qs"]), n("Mul", ["kt", "sc"], ["ks"]), n("MatMul", ["qs", "ks"], ["s"]),
              n("Where", ["keep", "zero", "ninf"], ["mask"]), n("Add", ["s", "mask"], ["a"]),
              n("Softmax", ["a"], ["p"], axis=2 if kind == "axis2" else -1)]
    p = "p"
    if guard:
        nodes += [n("IsNaN", ["p"], ["isnan"]), n("Where", ["isnan", "zero", "p"], ["pg"])]
        p = "pg"
    nodes += [n("MatMul", [p, "vt"], ["c"]), n("Transpose", ["c"], ["ct"], perm=[0, 2, 1, 3]),
              n("Reshape", ["ct", "shp2"], ["y"])]
    ins = [helper.make_tensor_value_info(x, dt, in_shape(kind, x)) for x in inputs_of(kind)]
    ins.append(helper.make_tensor_value_info("keep", TensorProto.BOOL, [1, 1, S, S]))
    outs = [helper.make_tensor_value_info("y", dt, [1, S, E]), helper.make_tensor_value_info("mask", dt, [1, 1, S, S])]
    if kind == "qkv_shared":
        outs.append(helper.make_tensor_value_info("k", dt, [1, S, E]))
    g = helper.make_graph(nodes, "attention_" + kind, ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    return m, npdt



def main():
    flagos, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    opencl = has_opencl(flagos)
    failed = 0
    rng = np.random.default_rng(7)
    for kind in ("plain", "guard", "f16", "axis2", "layouts", "qkv", "qkv_f16", "qkv_shared"):
        m, npdt = model(kind)
        path = os.path.join(work, kind + ".onnx")
        onnx.save(m, path)
        feeds = {x: rng.standard_normal(in_shape(kind, x)).astype(npdt) for x in inputs_of(kind)}
        keep = rng.random((1, 1, S, S)) > 0.3
        keep[0, 0, 3, :] = False
        feeds["keep"] = keep
        args = input_args(work, kind, feeds)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        ref = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(["y"], feeds)[0].astype(np.float32)
        bundle = os.path.join(work, kind + ".flagos")
        c = run([flagos, "compile", path, "--target", "cpu,opencl", "-o", bundle], {"FLAGOS_FUSE_TRACE": "1"})
        want = 0 if kind == "axis2" else 1
        got = c.stderr.count("as one attention")
        in_place = c.stderr.count("in place")
        want_in_place = 1 if kind in ("qkv", "qkv_f16") else 0
        if c.returncode != 0 or got != want or in_place != want_in_place:
            print("FAIL %s: compile exit %d, %d attention node(s), want %d; %d reading a Split's input in place, want %d\n%s"
                  % (kind, c.returncode, got, want, in_place, want_in_place, c.stderr))
            failed += 1
            continue
        runs = [("cpu", {}, 0)]
        if opencl:
            on = {"FLAGOS_OPENCL_ATTENTION": "1"}
            runs += [("opencl", on, want), ("opencl", dict(on, FLAGOS_OPENCL_ATTENTION_TILE="64"), want),
                     ("opencl", dict(on, FLAGOS_OPENCL_ATTENTION_ROWS="4"), want),
                     ("opencl", {"FLAGOS_OPENCL_ATTENTION": "0"}, 0)]
        else:
            print("skipped %s on opencl: no OpenCL device" % kind)
        tol = 2e-3 if npdt == np.float16 else 1e-5
        for i, (dev, env, calls) in enumerate(runs):
            out = os.path.join(work, "out_%s_%s_%d" % (kind, dev, i))
            r, label = run_bundle(flagos, bundle, kind, dev, env, out, args)
            if r.returncode != 0:
                failed += 1
                continue
            y = np.load(os.path.join(out, "y.npy")).astype(np.float32)
            took = r.stderr.count("opencl attention:")
            close = y.shape == ref.shape and np.allclose(y, ref, rtol=tol, atol=tol, equal_nan=True)
            # the NaN row: NaN without the guard, as ONNX Runtime's; 0 with it
            nan_rows = int(np.isnan(y).any(axis=-1).sum()) if close else -1
            if not close or (took > 0) != (calls > 0) or nan_rows != int(np.isnan(ref).any(axis=-1).sum()):
                print("FAIL %s: close %s, max diff %s, attention calls %d (want %s), NaN rows %d" %
                      (label, close, np.nanmax(np.abs(y - ref)) if y.shape == ref.shape else y.shape, took,
                       "some" if calls else "none", nan_rows))
                failed += 1
            else:
                print("ok %s: max diff %.3g, attention calls %d, NaN rows %d" %
                      (label, float(np.nanmax(np.abs(y - ref))), took, nan_rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
