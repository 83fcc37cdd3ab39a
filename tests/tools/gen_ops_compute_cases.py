#!/usr/bin/env python3
"""Writes extra test cases for the compute operator families (linalg, conv, pool,
attention) in ONNX's conformance layout: tests/data/ops_compute/<case>/model.onnx
and test_data_set_0/{input,output}_K.pb. They cover what ONNX's own node tests
leave out (grouped/dilated/3-D convolutions, larger determinants, broadcast
einsums, float16 and integer matmuls...).

Expected outputs come from ONNX's reference implementation; where onnxruntime can
run the model too, both must agree, so each case has two independent references.
Run from the repository root: python3 tests/tools/gen_ops_compute_cases.py
"""
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

try:
    import onnxruntime as ort
except ImportError:  # the cases are still written, with one reference
    ort = None

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "ops_compute")
rng = np.random.default_rng(20240611)
NP2ONNX = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.float64: TensorProto.DOUBLE,
           np.int32: TensorProto.INT32, np.int64: TensorProto.INT64, np.uint8: TensorProto.UINT8,
           np.int8: TensorProto.INT8, np.bool_: TensorProto.BOOL}


def rnd(shape, dtype=np.float32):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -20), min(info.max, 20)
        return rng.integers(lo, hi + 1, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def case(name, op, inputs, attrs=None, opset=22, n_out=None, out_names=None, domain="", prefer_ort=False,
         use_ort=True):
    """prefer_ort: the ONNX reference is known wrong here; onnxruntime's result is used.
    use_ort=False: onnxruntime implements an older reading of the spec; the reference alone decides."""
    """inputs: list of (name, array or None for an omitted optional input)."""
    attrs = attrs or {}
    in_names = [n if a is not None else "" for n, a in inputs]
    outs = out_names or [f"y{k}" for k in range(n_out or 1)]
    n_out = len([o for o in outs if o])
    node = helper.make_node(op, in_names, outs, **attrs)
    g_in = [helper.make_tensor_value_info(n, NP2ONNX[a.dtype.type], a.shape) for n, a in inputs if a is not None]
    feeds = {n: a for n, a in inputs if a is not None}
    def build(out_types, shapes=None):
        shapes = shapes or [None] * len(out_types)
        g_out = [helper.make_tensor_value_info(o, t, sh) for o, t, sh in zip([o for o in outs if o], out_types, shapes)]
        m = helper.make_model(helper.make_graph([node], name, g_in, g_out),
                              opset_imports=[helper.make_opsetid(domain, opset)])
        m.ir_version = 10
        return m

    expected = got = None
    try:
        expected = ReferenceEvaluator(build([TensorProto.UNDEFINED] * n_out)).run(None, feeds)
    except Exception as e:  # the reference has gaps (grouped ConvTranspose...)
        print(f"{name}: ONNX reference failed ({type(e).__name__}: {e})")
    if not use_ort:
        pass
    elif ort is not None and expected is not None:
        try:
            m = build([NP2ONNX[e.dtype.type] for e in expected])
            got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception:
            got = None
    elif ort is not None and use_ort:
        try:
            m = build([NP2ONNX[inputs[0][1].dtype.type]] * n_out)
            got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception as e:
            sys.exit(f"{name}: onnxruntime failed too ({e})")
    if expected is None and got is None:
        sys.exit(f"{name}: no reference could run it")
    if prefer_ort:
        if got is None:
            sys.exit(f"{name}: onnxruntime is needed for this case")
        expected = None
    if expected is not None and got is not None:
        for e, g in zip(expected, got):
            tol = 1e-2 if e.dtype == np.float16 else 1e-4
            if e.dtype.kind == "f":
                ok = np.allclose(e.astype(np.float64), g.astype(np.float64), rtol=tol, atol=tol, equal_nan=True)
            else:
                ok = np.array_equal(e, g)
            if not ok:
                sys.exit(f"{name}: onnxruntime and the ONNX reference disagree")
        cross = "ONNX reference, checked against onnxruntime"
    elif expected is not None:
        cross = "ONNX reference only"
    else:
        expected = got
        cross = "onnxruntime only"
    model = build([NP2ONNX[e.dtype.type] for e in expected], [e.shape for e in expected])
    onnx.checker.check_model(model)
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    onnx.save(model, os.path.join(d, "model.onnx"))
    for k, (n, a) in enumerate([(n, a) for n, a in inputs if a is not None]):
        onnx.save_tensor(numpy_helper.from_array(a, n), os.path.join(d, "test_data_set_0", f"input_{k}.pb"))
    for k, e in enumerate(expected):
        onnx.save_tensor(numpy_helper.from_array(e), os.path.join(d, "test_data_set_0", f"output_{k}.pb"))
    print(f"{name}: {cross}")


def main():
    # ---- linalg ----
    x = rnd((2, 3, 4, 4))
    x[0, 0, 0, 0] = 0.0  # forces a row swap
    case("det_4x4_batched", "Det", [("x", x)])
    case("det_6x6", "Det", [("x", rnd((6, 6)))])
    case("einsum_implicit_matmul", "Einsum", [("a", rnd((3, 4), np.float64)), ("b", rnd((4, 5), np.float64))],
         {"equation": "ij,jk"}, opset=12)
    case("einsum_outer", "Einsum", [("a", rnd((3,))), ("b", rnd((4,)))], {"equation": "i,j->ij"}, opset=12)
    case("einsum_trace", "Einsum", [("a", rnd((4, 4)))], {"equation": "ii"}, opset=12)
    case("einsum_ellipsis_bcast", "Einsum", [("a", rnd((2, 1, 3, 4))), ("b", rnd((5, 4, 2)))],
         {"equation": "...ij,...jk->...ik"}, opset=12)
    case("einsum_sum_all", "Einsum", [("a", rnd((2, 3, 4)))], {"equation": "ijk->"}, opset=12)
    case("einsum_chain", "Einsum", [("a", rnd((2, 3))), ("b", rnd((3, 4))), ("c", rnd((4, 2)))],
         {"equation": "ij,jk,kl->il"}, opset=12)
    case("einsum_int32_transpose_sum", "Einsum", [("a", rnd((3, 4, 5), np.int32))], {"equation": "ijk->kj"}, opset=12)
    case("matmul_f16_bcast", "MatMul", [("a", rnd((2, 1, 3, 4), np.float16)), ("b", rnd((3, 4, 5), np.float16))], opset=13)
    case("matmul_int32", "MatMul", [("a", rnd((2, 3), np.int32)), ("b", rnd((3, 4), np.int32))], opset=13)
    case("matmul_f64_shared_b", "MatMul", [("a", rnd((3, 2, 4), np.float64)), ("b", rnd((4, 5), np.float64))], opset=13)
    case("matmul_shared_a", "MatMul", [("a", rnd((2, 4))), ("b", rnd((3, 4, 5)))], opset=13)
    case("matmul_1d_2d", "MatMul", [("a", rnd((4,))), ("b", rnd((4, 3)))], opset=13)
    case("gemm_trans_col_bias", "Gemm", [("a", rnd((4, 3))), ("b", rnd((5, 4))), ("c", rnd((3, 1)))],
         {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, opset=13)
    case("gemm_f64_no_bias", "Gemm", [("a", rnd((3, 6), np.float64)), ("b", rnd((6, 2), np.float64))],
         {"alpha": 1.5}, opset=13)
    case("matmulinteger_zero_points", "MatMulInteger",
         [("a", rnd((3, 4), np.uint8) + 20), ("b", rnd((4, 2), np.int8)), ("az", np.array(7, np.uint8)),
          ("bz", np.array(-3, np.int8))], opset=10)

    # ---- conv ----
    case("conv_group_dilation_bias", "Conv", [("x", rnd((2, 4, 7, 6))), ("w", rnd((6, 2, 3, 2))), ("b", rnd((6,)))],
         {"group": 2, "dilations": [2, 1], "strides": [1, 2], "pads": [1, 0, 2, 1]})
    case("conv_3d_same_upper", "Conv", [("x", rnd((1, 2, 5, 6, 4))), ("w", rnd((3, 2, 3, 3, 2)))],
         {"strides": [2, 1, 2], "auto_pad": "SAME_UPPER"})
    case("conv_1d_valid_f16", "Conv", [("x", rnd((1, 3, 10), np.float16)), ("w", rnd((2, 3, 3), np.float16))],
         {"auto_pad": "VALID"})
    case("conv_depthwise", "Conv", [("x", rnd((1, 3, 6, 6))), ("w", rnd((3, 1, 3, 3)))],
         {"group": 3, "pads": [1, 1, 1, 1]})
    case("convtranspose_group_bias", "ConvTranspose", [("x", rnd((1, 4, 3, 3))), ("w", rnd((4, 3, 3, 3))),
                                                       ("b", rnd((6,)))],
         {"group": 2, "strides": [2, 2], "dilations": [1, 2], "output_padding": [1, 0], "pads": [1, 0, 0, 1]})
    case("convtranspose_1d_same_lower", "ConvTranspose", [("x", rnd((1, 1, 4))), ("w", rnd((1, 2, 3)))],
         {"strides": [2], "auto_pad": "SAME_LOWER"})
    case("convinteger_per_channel", "ConvInteger",
         [("x", rnd((1, 2, 4, 4), np.uint8) + 20), ("w", rnd((3, 2, 2, 2), np.uint8) + 20),
          ("xz", np.array(5, np.uint8)), ("wz", np.array([1, 2, 3], np.uint8))], {"pads": [1, 0, 0, 1]}, opset=10)
    case("qlinearconv_per_channel_bias", "QLinearConv",
         [("x", rnd((1, 2, 5, 5), np.uint8) + 20), ("xs", np.array(0.05, np.float32)), ("xz", np.array(10, np.uint8)),
          ("w", rnd((3, 2, 3, 3), np.int8)), ("ws", np.array([0.02, 0.03, 0.01], np.float32)),
          ("wz", np.array([0, 0, 0], np.int8)), ("ys", np.array(0.1, np.float32)), ("yz", np.array(128, np.uint8)),
          ("b", rnd((3,), np.int32))], {"pads": [1, 1, 1, 1]}, opset=10)
    off = (rng.standard_normal((1, 2 * 2 * 2 * 2, 3, 2)) * 0.7).astype(np.float32)
    mask = rng.random((1, 2 * 2 * 2, 3, 2)).astype(np.float32)
    case("deformconv_groups_stride", "DeformConv",
         [("x", rnd((1, 4, 5, 4))), ("w", rnd((2, 2, 2, 2))), ("off", off), ("b", rnd((2,))), ("m", mask)],
         {"group": 2, "offset_group": 2, "strides": [2, 2], "dilations": [1, 2], "pads": [1, 1, 0, 1]})

    # ---- pool ----
    case("maxpool_dilated_indices", "MaxPool", [("x", rnd((1, 2, 7, 7)))],
         {"kernel_shape": [3, 3], "dilations": [2, 1], "strides": [2, 2], "pads": [1, 1, 1, 1]}, n_out=2)
    case("maxpool_1d_ceil_int8", "MaxPool", [("x", rnd((1, 2, 9), np.int8))],
         {"kernel_shape": [3], "strides": [2], "ceil_mode": 1})
    case("avgpool_3d_pads", "AveragePool", [("x", rnd((1, 1, 4, 5, 3)))],
         {"kernel_shape": [2, 3, 2], "strides": [1, 2, 1], "pads": [1, 1, 0, 0, 1, 1]})
    case("avgpool_2d_count_pad_f64", "AveragePool", [("x", rnd((1, 2, 5, 4), np.float64))],
         {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "count_include_pad": 1})
    case("lppool_p1", "LpPool", [("x", rnd((1, 2, 5, 5)))], {"kernel_shape": [2, 2], "p": 1, "strides": [2, 2]})
    case("globallppool_p3", "GlobalLpPool", [("x", rnd((2, 3, 4, 3)))], {"p": 3}, opset=21)
    case("globalmaxpool_1d", "GlobalMaxPool", [("x", rnd((2, 3, 7)))], prefer_ort=True)  # reference drops a dim
    xi = np.array([[[[1, 9], [11, 15]]]], np.int64)
    case("maxunpool_pads", "MaxUnpool", [("x", rnd((1, 1, 2, 2))), ("i", xi)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]})

    # ---- attention ----
    q, k, v = rnd((2, 3, 24)), rnd((2, 5, 8)), rnd((2, 5, 10))
    pk, pv = rnd((2, 2, 4, 4)), rnd((2, 2, 4, 5))
    fmask = rnd((3, 9))
    case("attention_3d_gqa_past_causal_softcap", "Attention",
         [("q", q), ("k", k), ("v", v), ("mask", fmask), ("pk", pk), ("pv", pv)],
         {"q_num_heads": 6, "kv_num_heads": 2, "is_causal": 1, "softcap": 1.5, "qk_matmul_output_mode": 2},
         opset=23, out_names=["y", "present_k", "present_v", "qk"], use_ort=False)  # ORT predates offset causal
    bmask = rng.random((2, 1, 3, 4)) > 0.3
    case("attention_4d_boolmask_short_scaled", "Attention",
         [("q", rnd((2, 2, 3, 4))), ("k", rnd((2, 2, 6, 4))), ("v", rnd((2, 2, 6, 3))), ("mask", bmask)],
         {"scale": 0.7, "qk_matmul_output_mode": 3}, opset=23, out_names=["y", "", "", "qk"])
    pos = np.array([[3, 1, 4], [0, 5, 2]], np.int64)
    case("rotary_3d_interleaved_partial", "RotaryEmbedding",
         [("x", rnd((2, 3, 16))), ("cos", rnd((8, 2))), ("sin", rnd((8, 2))), ("pos", pos)],
         {"num_heads": 2, "interleaved": 1, "rotary_embedding_dim": 4}, opset=23)


if __name__ == "__main__":
    main()
