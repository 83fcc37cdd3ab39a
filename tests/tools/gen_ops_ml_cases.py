#!/usr/bin/env python3
"""Writes test cases for the operator families training, ml, random and extra1
(NonMaxSuppression) in ONNX's conformance layout:

  tests/data/ops_ml/<case>/model.onnx, test_data_set_0/{input,output}_K.pb
      cases with reference outputs, covering what ONNX's node tests leave out
      (many boxes, symbolic shapes, T > 0 optimizer steps, numeric label maps,
      deeper tree ensembles with every node mode and aggregate...).
  tests/data/ops_random/<case>/model.onnx, test_data_set_0/input_K.pb
      models of the random operators; their outputs are checked statistically by
      tests/unit/test_ops_ml.c, so no output file is written.

Expected outputs come from ONNX's reference implementation and, where
onnxruntime implements the operator, from onnxruntime too: both must agree
unless the case says which one is right and why (onnxruntime has no
ai.onnx.preview.training kernels, so those use the reference alone; where both
depart from the spec, the expected values are computed from the spec).
Run from the repository root: python3 tests/tools/gen_ops_ml_cases.py
"""
import os
import shutil
import statistics
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

try:
    import onnxruntime as ort
except ImportError:
    ort = None

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
OUT = os.path.join(ROOT, "ops_ml")
OUT_RANDOM = os.path.join(ROOT, "ops_random")
rng = np.random.default_rng(7319)
NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
           np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.int64): TensorProto.INT64,
           np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int16): TensorProto.INT16,
           np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.bool_): TensorProto.BOOL}


def make_model(name, node, inputs, out_types, out_shapes, domain, opset, in_shapes=None):
    in_shapes = in_shapes or {}
    g_in = [helper.make_tensor_value_info(n, NP2ONNX[a.dtype], in_shapes.get(n, a.shape)) for n, a in inputs
            if a is not None]
    g_out = [helper.make_tensor_value_info(o, t, s) for o, t, s in zip(node.output, out_types, out_shapes)]
    imports = [helper.make_opsetid("", 21)]
    if domain:
        imports.append(helper.make_opsetid(domain, opset))
    else:
        imports = [helper.make_opsetid("", opset)]
    m = helper.make_model(helper.make_graph([node], name, g_in, g_out), opset_imports=imports)
    m.ir_version = 10
    return m


def close(e, g, tol):
    if e.dtype.kind == "f":
        return e.shape == g.shape and np.allclose(e.astype(np.float64), g.astype(np.float64), rtol=tol, atol=tol,
                                                  equal_nan=True)
    return e.shape == g.shape and np.array_equal(e, g)


def case(name, op, inputs, attrs=None, domain="", opset=21, n_out=1, ref="both", in_shapes=None, tol=1e-5,
         fix=None, expected_by_hand=None):
    """ref: "both" (reference and onnxruntime must agree), "ref" or "ort" (that one alone).
    in_shapes: graph input shapes to declare instead of the arrays' (symbolic dims).
    fix: applied to the reference's outputs where the reference departs from the spec
    (said at each use). expected_by_hand: outputs computed from the spec by hand."""
    attrs = attrs or {}
    in_names = [n if a is not None else "" for n, a in inputs]
    outs = [f"y{k}" for k in range(n_out)]
    node = helper.make_node(op, in_names, outs, domain=domain or None, **attrs)
    feeds = {n: a for n, a in inputs if a is not None}
    untyped = make_model(name, node, inputs, [TensorProto.UNDEFINED] * n_out, [None] * n_out, domain, opset, in_shapes)
    expected = got = None
    if expected_by_hand is not None:
        ref, expected = "hand", expected_by_hand
    if ref in ("both", "ref"):
        expected = ReferenceEvaluator(untyped).run(None, feeds)
        if fix:
            expected = fix(expected)
    if ref in ("both", "ort"):
        if ort is None:
            sys.exit(f"{name}: onnxruntime is needed")
        types = [NP2ONNX[e.dtype] for e in expected] if expected else None
        if types is None:
            # onnxruntime needs declared output types: take them from shape inference.
            inferred = onnx.shape_inference.infer_shapes(untyped)
            types = [o.type.tensor_type.elem_type for o in inferred.graph.output]
        m = make_model(name, node, inputs, types, [None] * n_out, domain, opset, in_shapes)
        try:
            got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception as e:  # onnxruntime lacks some type combinations
            if ref == "ort":
                sys.exit(f"{name}: onnxruntime failed ({e})")
            print(f"{name}: onnxruntime cannot run it ({str(e)[:80]}...)")
    if expected is not None and got is not None:
        for e, g in zip(expected, got):
            if not close(e, np.asarray(g), tol):
                sys.exit(f"{name}: onnxruntime and the ONNX reference disagree:\n{e}\n{g}")
        how = "ONNX reference, checked against onnxruntime"
    elif ref == "hand":
        how = "computed by hand from the spec"
    elif expected is not None:
        how = "ONNX reference only" + (", corrected" if fix else "")
    else:
        expected, how = [np.asarray(g) for g in got], "onnxruntime only"
    model = make_model(name, node, inputs, [NP2ONNX[e.dtype] for e in expected],
                       [[f"d{k}_{i}" for i in range(e.ndim)] if in_shapes else e.shape
                        for k, e in enumerate(expected)], domain, opset, in_shapes)
    onnx.checker.check_model(model)
    write(OUT, name, model, inputs, expected)
    print(f"{name}: {how}")


def write(root, name, model, inputs, expected):
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    onnx.save(model, os.path.join(d, "model.onnx"))
    for k, (n, a) in enumerate([(n, a) for n, a in inputs if a is not None]):
        onnx.save_tensor(numpy_helper.from_array(a, n), os.path.join(d, "test_data_set_0", f"input_{k}.pb"))
    for k, e in enumerate(expected or []):
        onnx.save_tensor(numpy_helper.from_array(e), os.path.join(d, "test_data_set_0", f"output_{k}.pb"))


def random_case(name, op, inputs, attrs, out_type, out_shape):
    node = helper.make_node(op, [n for n, _ in inputs], ["y"], **attrs)
    model = make_model(name, node, inputs, [out_type], [out_shape], "", 22)
    onnx.checker.check_model(model)
    write(OUT_RANDOM, name, model, inputs, None)
    print(f"{name}: statistical checks only")


# ---------------------------------------------------------------- NonMaxSuppression
def boxes(b, n, center=False):
    xy = rng.uniform(0, 10, size=(b, n, 2)).astype(np.float32)
    wh = rng.uniform(0.5, 4, size=(b, n, 2)).astype(np.float32)
    if center:
        return np.concatenate([xy, wh], axis=2)
    corners = np.concatenate([xy, xy + wh], axis=2)
    flip = rng.random((b, n)) < 0.3  # some boxes give their corners in the other order
    corners[flip] = corners[flip][:, [2, 3, 0, 1]]
    return corners[:, :, [1, 0, 3, 2]].copy()


def nms_cases():
    f = np.float32
    sc = rng.random((2, 3, 60)).astype(f)
    sc[0, 0, 5] = sc[0, 0, 9]  # a tie: the lower index goes first
    case("nms_many_boxes", "NonMaxSuppression",
         [("boxes", boxes(2, 60)), ("scores", sc), ("max", np.array([7], np.int64)), ("iou", np.array([0.3], f)),
          ("score_thr", np.array([0.2], f))], opset=11)
    case("nms_center_no_score_threshold", "NonMaxSuppression",
         [("boxes", boxes(1, 40, center=True)), ("scores", rng.random((1, 2, 40)).astype(f)),
          ("max", np.array([100], np.int64)), ("iou", np.array([0.1], f))], {"center_point_box": 1}, opset=11)
    case("nms_symbolic_shapes", "NonMaxSuppression",
         [("boxes", boxes(3, 25)), ("scores", rng.random((3, 4, 25)).astype(f)), ("max", np.array([3], np.int64)),
          ("iou", np.array([0.5], f)), ("score_thr", np.array([0.5], f))], opset=11,
         in_shapes={"boxes": ["B", "N", 4], "scores": ["B", "C", "N"]})
    # Without max_output_boxes_per_class no box is selected (the reference cannot run it).
    case("nms_default_max_is_zero", "NonMaxSuppression",
         [("boxes", boxes(1, 5)), ("scores", rng.random((1, 1, 5)).astype(f))], opset=11, ref="ort")
    case("nms_scalar_inputs_opset10", "NonMaxSuppression",
         [("boxes", boxes(1, 30)), ("scores", rng.random((1, 2, 30)).astype(f)), ("max", np.array(4, np.int64)),
          ("iou", np.array(0.2, f)), ("score_thr", np.array(0.1, f))], opset=10, ref="ort")


# ---------------------------------------------------------------- training
def training_cases():
    d = "ai.onnx.preview.training"

    def like(dt):
        # The reference lets NumPy promote some f32 results to f64; the spec keeps X's type.
        return lambda outs: [o.astype(dt) for o in outs]
    x, g, h = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.random((3, 4))
    case("adagrad_t5_f64", "Adagrad",
         [("R", np.array(0.05)), ("T", np.array(5, np.int64)), ("X", x), ("G", g), ("H", h)],
         {"decay_factor": 0.2, "epsilon": 1e-4, "norm_coefficient": 0.01}, domain=d, opset=1, n_out=2, ref="ref")
    f = np.float32
    xs = [rng.standard_normal(s).astype(f) for s in [(2, 3), (5,)]]
    gs = [rng.standard_normal(a.shape).astype(f) for a in xs]
    vs = [rng.standard_normal(a.shape).astype(f) for a in xs]
    hs = [rng.random(a.shape).astype(f) for a in xs]
    case("adam_t3_two_tensors", "Adam",
         [("R", np.array(0.01, f)), ("T", np.array(3, np.int64)), ("X1", xs[0]), ("X2", xs[1]), ("G1", gs[0]),
          ("G2", gs[1]), ("V1", vs[0]), ("V2", vs[1]), ("H1", hs[0]), ("H2", hs[1])],
         {"alpha": 0.8, "beta": 0.9, "epsilon": 1e-3, "norm_coefficient": 0.02, "norm_coefficient_post": 0.01},
         domain=d, opset=1, n_out=6, ref="ref", fix=like(f))
    case("adam_default_attrs_t1", "Adam",
         [("R", np.array(0.1, f)), ("T", np.array(1, np.int64)), ("X", xs[0]), ("G", gs[0]), ("V", vs[0]),
          ("H", hs[0])], domain=d, opset=1, n_out=3, ref="ref", fix=like(f))
    case("momentum_t2_standard", "Momentum",
         [("R", np.array(0.1, f)), ("T", np.array(2, np.int64)), ("X", xs[1]), ("G", gs[1]), ("V", vs[1])],
         {"alpha": 0.9, "beta": 0.5, "mode": "standard", "norm_coefficient": 0.01}, domain=d, opset=1, n_out=2,
         ref="ref", fix=like(f))
    case("momentum_t4_nesterov_f64", "Momentum",
         [("R", np.array(0.1)), ("T", np.array(4, np.int64)), ("X", x), ("G", g), ("V", h)],
         {"alpha": 0.7, "beta": 0.3, "mode": "nesterov", "norm_coefficient": 0.05}, domain=d, opset=1, n_out=2,
         ref="ref")


def gradient_cases():
    """Gradient has no implementation in ONNX's reference or onnxruntime: the
    expected values are the derivatives worked out by hand, evaluated by NumPy."""
    f = np.float64
    a = rng.uniform(0.5, 2.0, (3, 4))
    b = rng.uniform(0.5, 2.0, (3, 4))
    z = rng.uniform(-1.0, 1.0, (4,))  # in zs: a constant broadcast into the others
    nodes = [
        helper.make_node("Mul", ["a", "b"], ["ab"]),
        helper.make_node("Tanh", ["ab"], ["t"]),
        helper.make_node("Exp", ["a"], ["ea"]),
        helper.make_node("Div", ["ea", "b"], ["q"]),
        helper.make_node("Add", ["t", "q"], ["s"]),
        helper.make_node("Sigmoid", ["z"], ["sz"]),
        helper.make_node("Mul", ["s", "sz"], ["u"]),
        helper.make_node("Sqrt", ["a"], ["ra"]),
        helper.make_node("Log", ["b"], ["lb"]),
        helper.make_node("Sub", ["ra", "lb"], ["w"]),
        helper.make_node("Pow", ["w", "two"], ["w2"]),
        helper.make_node("Add", ["u", "w2"], ["y"]),
        helper.make_node("Gradient", ["a", "b", "z"], ["dy_da", "dy_db"], domain="ai.onnx.preview.training",
                         xs=["a", "b"], zs=["z"], y="y"),
    ]
    sz = 1 / (1 + np.exp(-z))
    t = np.tanh(a * b)
    w = np.sqrt(a) - np.log(b)
    dy_da = ((1 - t * t) * b + np.exp(a) / b) * sz + 2 * w / (2 * np.sqrt(a))
    dy_db = ((1 - t * t) * a - np.exp(a) / (b * b)) * sz + 2 * w * (-1 / b)
    y = (t + np.exp(a) / b) * sz + w * w
    g_in = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, v.shape) for n, v in [("a", a), ("b", b), ("z", z)]]
    g_out = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, v.shape)
             for n, v in [("y", y), ("dy_da", dy_da), ("dy_db", dy_db)]]
    graph = helper.make_graph(nodes, "gradient_pointwise_chain", g_in, g_out,
                              initializer=[numpy_helper.from_array(np.array(2.0, f), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("ai.onnx.preview.training", 1)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    write(OUT, "gradient_pointwise_chain", model, [("a", a), ("b", b), ("z", z)], [y, dy_da, dy_db])
    print("gradient_pointwise_chain: computed by hand")


# ---------------------------------------------------------------- ai.onnx.ml
def ml_cases():
    d = "ai.onnx.ml"
    f = np.float32
    case("binarizer_int64", "Binarizer", [("x", rng.integers(-5, 6, (4, 5)).astype(np.int64))], {"threshold": 1.5},
         domain=d, opset=1)
    case("binarizer_f64_default", "Binarizer", [("x", rng.standard_normal((7,)))], domain=d, opset=1)
    case("afe_1d_input", "ArrayFeatureExtractor",
         [("x", rng.standard_normal(6).astype(f)), ("y", np.array([4, 0, 4], np.int64))], domain=d, opset=1)
    case("afe_3d_input_2d_indices", "ArrayFeatureExtractor",
         [("x", rng.integers(0, 100, (2, 3, 5)).astype(np.int64)), ("y", np.array([[3, 1], [0, 4]], np.int64))],
         domain=d, opset=1)
    case("label_encoder_int_to_float", "LabelEncoder",
         [("x", np.array([[1, 5, 7], [3, 5, 2]], np.int64))],
         {"keys_int64s": [1, 3, 5], "values_floats": [0.5, 1.5, 2.5], "default_float": 9.0}, domain=d, opset=2)
    keys = rng.permutation(100)[:40].astype(np.float32) - 50
    keys[9] = keys[3]  # repeated key: the last one wins (onnxruntime keeps the first, against the spec)
    vals = rng.integers(-1000, 1000, 40).astype(np.int64)
    x = np.concatenate([keys[:20], np.array([-1000.5, 3.25], f), keys[30:]]).reshape(4, -1)
    case("label_encoder_float_to_int_table", "LabelEncoder", [("x", x)],
         {"keys_floats": keys.tolist(), "values_int64s": vals.tolist(), "default_int64": -7}, domain=d, opset=2,
         ref="ref")
    # "Float keys with value NaN match any input NaN": ONNX's reference and
    # onnxruntime both miss it, so the expected values come from the spec.
    x = np.array([np.nan, 3.0, 2.0, -np.nan, 1.0], f)
    case("label_encoder_nan_key", "LabelEncoder", [("x", x)],
         {"keys_floats": [1.0, np.nan, 3.0], "values_int64s": [10, 20, 30]}, domain=d, opset=2,
         expected_by_hand=[np.array([20, 30, -1, 20, 10], np.int64)])
    case("label_encoder_tensor_int32_to_int16", "LabelEncoder", [("x", np.array([4, 8, 15, 16, 23, 42], np.int32))],
         {"keys_tensor": numpy_helper.from_array(np.array([4, 15, 42, 15], np.int32), "keys_tensor"),
          "values_tensor": numpy_helper.from_array(np.array([10, 20, 30, 40], np.int16), "values_tensor"),
          "default_tensor": numpy_helper.from_array(np.array([-5], np.int16), "default_tensor")},
         domain=d, opset=4, ref="ref")
    tree_cases()


def random_tree(n_features, depth, modes, n_targets, rng_):
    """Nodes and leaves of one random tree, ids relative to its own arrays."""
    nodes, leaves = [], []

    def build(level):
        if level == depth or (level > 1 and rng_.random() < 0.25):
            leaves.append((float(rng_.normal()), int(rng_.integers(0, n_targets))))
            return True, len(leaves) - 1
        j = len(nodes)
        nodes.append(None)
        mode = int(rng_.choice(modes))
        split = float(np.round(rng_.normal() * 1.5))
        # Integer members: onnxruntime implements no others. No 0: ONNX's reference
        # reads a member 0 as the end of the set.
        members = sorted(set(rng_.choice([-2.0, -1.0, 1.0, 2.0], size=3).tolist())) if mode == 6 else None
        t = build(level + 1)
        fl = build(level + 1)
        nodes[j] = dict(feature=int(rng_.integers(0, n_features)), mode=mode, split=split, members=members,
                        true=t, false=fl, mvtt=int(rng_.random() < 0.5))
        return False, j

    build(0)
    return nodes, leaves


def ensemble_attrs(trees, n_targets, split_dtype=np.float32, weight_dtype=np.float32, **extra):
    a = dict(nodes_featureids=[], nodes_modes=[], nodes_splits=[], nodes_truenodeids=[], nodes_falsenodeids=[],
             nodes_trueleafs=[], nodes_falseleafs=[], nodes_missing_value_tracks_true=[], leaf_targetids=[],
             leaf_weights=[], tree_roots=[], membership_values=[])
    for nodes, leaves in trees:
        nb, lb = len(a["nodes_featureids"]), len(a["leaf_weights"])
        a["tree_roots"].append(nb)
        for n in nodes:
            a["nodes_featureids"].append(n["feature"])
            a["nodes_modes"].append(n["mode"])
            a["nodes_splits"].append(n["split"] if n["mode"] != 6 else np.nan)
            for side in ("true", "false"):
                leaf, idx = n[side]
                a[f"nodes_{side}nodeids"].append(idx + (lb if leaf else nb))
                a[f"nodes_{side}leafs"].append(int(leaf))
            a["nodes_missing_value_tracks_true"].append(n["mvtt"])
            if n["members"] is not None:
                a["membership_values"] += n["members"] + [np.nan]
        for w, t in leaves:
            a["leaf_weights"].append(w)
            a["leaf_targetids"].append(t)
    out = dict(n_targets=n_targets, tree_roots=a["tree_roots"], leaf_targetids=a["leaf_targetids"],
               nodes_featureids=a["nodes_featureids"], nodes_truenodeids=a["nodes_truenodeids"],
               nodes_falsenodeids=a["nodes_falsenodeids"], nodes_trueleafs=a["nodes_trueleafs"],
               nodes_falseleafs=a["nodes_falseleafs"],
               nodes_missing_value_tracks_true=a["nodes_missing_value_tracks_true"],
               nodes_modes=numpy_helper.from_array(np.array(a["nodes_modes"], np.uint8), "nodes_modes"),
               nodes_splits=numpy_helper.from_array(np.array(a["nodes_splits"], split_dtype), "nodes_splits"),
               leaf_weights=numpy_helper.from_array(np.array(a["leaf_weights"], weight_dtype), "leaf_weights"))
    if a["membership_values"]:
        out["membership_values"] = numpy_helper.from_array(np.array(a["membership_values"], np.float32),
                                                           "membership_values")
    out.update(extra)
    return out


def tree_x(n, f, dtype):
    # Whole numbers: equal to splits and members now and then (onnxruntime truncates
    # inputs to integers for BRANCH_MEMBER, so fractions would make it disagree).
    x = np.round(rng.normal(size=(n, f)) * 1.5)
    x = x.astype(dtype)
    x[rng.random((n, f)) < 0.1] = np.nan
    return x


def tree_cases():
    d = "ai.onnx.ml"
    trng = np.random.default_rng(11)
    all_modes = [0, 1, 2, 3, 4, 5, 6]
    trees = [random_tree(4, 6, all_modes, 3, trng) for _ in range(5)]
    # MIN/MAX of a target no leaf reached: the type's largest/lowest value in ONNX's
    # reference (which FlagOS follows), 0 in onnxruntime.
    for agg, nm, ref in [(1, "sum", "both"), (0, "average", "both"), (2, "min", "ref"), (3, "max", "ref")]:
        case(f"tree_ensemble_all_modes_{nm}", "TreeEnsemble", [("x", tree_x(30, 4, np.float32))],
             ensemble_attrs(trees, 3, aggregate_function=agg), domain=d, opset=5, ref=ref)
    trees = [random_tree(5, 8, [0, 1], 1, trng) for _ in range(8)]
    case("tree_ensemble_regressor_f64", "TreeEnsemble", [("x", tree_x(40, 5, np.float64))],
         ensemble_attrs(trees, 1, np.float64, np.float64), domain=d, opset=5, ref="both")
    # ONNX's reference ignores post_transform, and onnxruntime swaps SOFTMAX (1) and
    # LOGISTIC (2) of opset 5: the expected values apply the spec's transform to the
    # reference's raw scores. SOFTMAX_ZERO (3) is undefined in the spec beyond its
    # name; onnxruntime's reading (zeros stay zero) is the reference there.
    trees = [random_tree(3, 5, [0, 3, 4], 4, trng) for _ in range(6)]

    def softmax(outs):
        e = np.exp(outs[0] - outs[0].max(axis=1, keepdims=True))
        return [(e / e.sum(axis=1, keepdims=True)).astype(np.float32)]

    def logistic(outs):
        return [(1 / (1 + np.exp(-outs[0].astype(np.float64)))).astype(np.float32)]

    def probit(outs):
        nd = statistics.NormalDist()
        return [np.vectorize(nd.inv_cdf)(outs[0].astype(np.float64)).astype(np.float32)]

    for post, nm, fix in [(1, "softmax", softmax), (2, "logistic", logistic)]:
        case(f"tree_ensemble_post_{nm}", "TreeEnsemble", [("x", tree_x(20, 3, np.float32))],
             ensemble_attrs(trees, 4, post_transform=post), domain=d, opset=5, ref="ref", fix=fix)
    case("tree_ensemble_post_softmax_zero", "TreeEnsemble", [("x", tree_x(20, 3, np.float32))],
         ensemble_attrs(trees, 4, post_transform=3), domain=d, opset=5, ref="ort", tol=1e-4)
    trees = [random_tree(3, 4, [0], 1, trng) for _ in range(3)]
    attrs = ensemble_attrs(trees, 1, post_transform=4, aggregate_function=0)
    n_leaves = len(attrs["leaf_targetids"])  # averages of weights in (0, 1) stay inside it
    attrs["leaf_weights"] = numpy_helper.from_array(trng.uniform(0.02, 0.98, n_leaves).astype(np.float32))
    case("tree_ensemble_post_probit", "TreeEnsemble", [("x", tree_x(20, 3, np.float32))], attrs, domain=d, opset=5,
         ref="ref", fix=probit)


# ---------------------------------------------------------------- random
def random_cases():
    f = np.float32
    random_case("random_uniform_seeded", "RandomUniform", [],
                {"shape": [200, 300], "low": -2.0, "high": 3.0, "seed": 5.0, "dtype": TensorProto.DOUBLE},
                TensorProto.DOUBLE, [200, 300])
    random_case("random_uniform_f16", "RandomUniform", [], {"shape": [50000], "dtype": TensorProto.FLOAT16},
                TensorProto.FLOAT16, [50000])
    random_case("random_normal_seeded", "RandomNormal", [],
                {"shape": [100, 500], "mean": 1.5, "scale": 2.0, "seed": 3.0}, TensorProto.FLOAT,
                [100, 500])
    random_case("random_uniform_like", "RandomUniformLike", [("x", np.zeros((100, 200), f))],
                {"low": 10.0, "high": 11.0}, TensorProto.FLOAT, [100, 200])
    random_case("random_normal_like_f64", "RandomNormalLike", [("x", np.zeros((20000,), np.int32))],
                {"dtype": TensorProto.DOUBLE, "mean": -1.0, "scale": 0.5}, TensorProto.DOUBLE,
                [20000])
    p = np.tile(np.array([0.0, 0.1, 0.5, 0.9, 1.0], f), (4000, 1))
    random_case("bernoulli_probabilities", "Bernoulli", [("p", p)], {"seed": 1.0}, TensorProto.FLOAT, p.shape)
    random_case("bernoulli_to_bool", "Bernoulli", [("p", p.astype(np.float64))], {"dtype": TensorProto.BOOL},
                TensorProto.BOOL, p.shape)
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.0, 0.2, 0.1]], f) + 1e-30).astype(f)
    random_case("multinomial_two_rows", "Multinomial", [("x", logits)],
                {"sample_size": 40000, "seed": 2.0, "dtype": TensorProto.INT64}, TensorProto.INT64, [2, 40000])


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.rmtree(OUT_RANDOM, ignore_errors=True)
    nms_cases()
    training_cases()
    gradient_cases()
    ml_cases()
    random_cases()


if __name__ == "__main__":
    main()
