#!/usr/bin/env python3
"""Writes tests/unit/onnx_import_facts.h: facts about every conformance model, read
with the Python `onnx` package, and small hand-built models with the values
onnx.numpy_helper decodes from them. test_onnx_import.c checks FlagOS's importer
against these, so the expected values never come from FlagOS itself.

Usage: python3 tests/tools/gen_import_facts.py [CONFORMANCE_DIR] [OUT_HEADER]
Needs onnx (tested with 1.23) and numpy; re-run and commit the header when the
conformance data changes.
"""
import glob
import math
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(ROOT), "shared", "conformance")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests", "unit", "onnx_import_facts.h")

KIND = {"tensor_type": 0, "sequence_type": 1, "optional_type": 2, "map_type": 3, "sparse_tensor_type": 0, None: 4}


def c_str(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    out = []
    for b in s:
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= b < 127 and ch != "?":
            out.append(ch)
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def c_double(x):
    x = float(x)
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    return repr(x)  # shortest round-trip form; C compilers read it back exactly


def c_bytes(name, data):
    lines = [f"static const unsigned char {name}[{max(len(data), 1)}] = {{"]
    for i in range(0, len(data), 24):
        lines.append("  " + ",".join("0x%02x" % b for b in data[i:i + 24]) + ",")
    if not data:
        lines.append("  0")
    lines.append("};")
    return "\n".join(lines)


def type_facts(vi_type):
    k = vi_type.WhichOneof("value")
    if k == "tensor_type":
        tt = vi_type.tensor_type
        rank = len(tt.shape.dim) if tt.HasField("shape") else -1
        return KIND[k], tt.elem_type, rank
    return KIND[k], 0, -1


def count_graph(g):
    nodes, subgraphs = len(g.node), 0
    for n in g.node:
        for a in n.attribute:
            subs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)
            for sg in subs:
                sn, ss = count_graph(sg)
                nodes += sn
                subgraphs += 1 + ss
    return nodes, subgraphs


def model_facts():
    rows = []
    for suite in ("onnx-node", "onnx-simple"):
        for path in sorted(glob.glob(os.path.join(CONF, suite, "*", "model.onnx"))):
            test = os.path.basename(os.path.dirname(path))
            m = onnx.load(path)
            g = m.graph
            inits = {t.name for t in g.initializer} | {s.values.name for s in g.sparse_initializer}
            inputs = [i for i in g.input if i.name not in inits]
            total, subs = count_graph(g)
            opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), -1)
            i0 = type_facts(inputs[0].type) if inputs else (-1, 0, -1)
            o0 = type_facts(g.output[0].type) if g.output else (-1, 0, -1)
            first = g.node[0].op_type if g.node else ""
            last = g.node[-1].op_type if g.node else ""
            rows.append("  {%s, %s, %d, %d, %d, %d, %d, %d, %s, %s, %d, %d, {%d, %d, %d}, {%d, %d, %d}, %s, %s}," % (
                c_str(suite), c_str(test), len(g.node), total, len(inputs), len(g.output), len(inits), subs,
                c_str(first), c_str(last), opset, m.ir_version, *i0, *o0,
                c_str(inputs[0].name if inputs else ""), c_str(g.output[0].name if g.output else "")))
    return rows


# ---- hand-built models for value checks ----

def values_of(t, base_dir=""):
    a = numpy_helper.to_array(t, base_dir)
    if a.dtype.kind == "c":
        a = a.view(np.float32 if a.dtype == np.complex64 else np.float64)
    if t.data_type == TensorProto.STRING:
        return None
    return [float(x) for x in a.astype(np.float64).flatten()]


def raw_tensor(name, dt, dims, vals):
    return helper.make_tensor(name, dt, dims, np.array(vals, dtype=helper.tensor_dtype_to_np_dtype(dt)), raw=True)


def special_inits():
    T = TensorProto
    ts = [
        # sub-byte types, packed by onnx.helper; raw and int32_data forms
        raw_tensor("i4_raw", T.INT4, [5], [-8, -1, 0, 7, 3]),
        helper.make_tensor("u4_fields", T.UINT4, [3], [15, 1, 9]),
        raw_tensor("i2_raw", T.INT2, [6], [-2, -1, 0, 1, 1, -2]),
        helper.make_tensor("u2_fields", T.UINT2, [5], [3, 0, 2, 1, 3]),
        helper.make_tensor("i4_fields", T.INT4, [3], [-7, 6, -1]),
        raw_tensor("f4_raw", T.FLOAT4E2M1, [4], [0.5, -6.0, 1.5, 3.0]),
        raw_tensor("f16_raw", T.FLOAT16, [3], [1.5, -2.25, 65504.0]),
        helper.make_tensor("f16_fields", T.FLOAT16, [2], np.array([0.333, -7.0], dtype=np.float16)),
        helper.make_tensor("bf16_fields", T.BFLOAT16, [2], [3.140625, -0.5]),
        helper.make_tensor("f8e4m3_fields", T.FLOAT8E4M3FN, [3], [448.0, -0.015625, 1.125]),
        helper.make_tensor("f8e5m2fnuz_fields", T.FLOAT8E5M2FNUZ, [2], [-3.0, 0.0078125]),
        helper.make_tensor("e8m0_fields", T.FLOAT8E8M0, [2], [0.25, 1024.0]),
        helper.make_tensor("c64_fields", T.COMPLEX64, [2], np.array([1 + 2j, -3.5 - 0.25j], dtype=np.complex64)),
        raw_tensor("c128_raw", T.COMPLEX128, [1, 2], [[0.1 + 0.2j, -1e300 + 5j]]),
        helper.make_tensor("bool_fields", T.BOOL, [4], [True, False, False, True]),
        helper.make_tensor("u32_fields", T.UINT32, [2], [4000000000, 7]),
        helper.make_tensor("u64_fields", T.UINT64, [2], [18000000000000000000, 1]),
        helper.make_tensor("i8_fields", T.INT8, [3], [-128, 127, -5]),
        raw_tensor("i16_raw", T.INT16, [2, 2], [[-32768, 1], [2, 32767]]),
        helper.make_tensor("f64_fields", T.DOUBLE, [2], [1e-300, -2.5]),
        helper.make_tensor("i64_fields", T.INT64, [0], []),
        helper.make_tensor("scalar_f32", T.FLOAT, [], [42.5]),
        helper.make_tensor("str_fields", T.STRING, [3], [b"abc", b"", b"x\x00y"]),
    ]
    sparse_lin = helper.make_sparse_tensor(
        helper.make_tensor("sparse_lin", T.FLOAT, [3], [1.5, -2.0, 4.0]),
        helper.make_tensor("sparse_lin_idx", T.INT64, [3], [1, 4, 5]), [2, 3])
    sparse_coo = helper.make_sparse_tensor(
        helper.make_tensor("sparse_coo", T.INT32, [2], [7, -9]),
        helper.make_tensor("sparse_coo_idx", T.INT64, [2, 2], [0, 2, 1, 0]), [2, 3])
    x = helper.make_tensor_value_info("X", T.FLOAT, ["N", None, 3])
    w = helper.make_tensor_value_info("scalar_f32", T.FLOAT, [])  # input that has an initializer
    seq = helper.make_value_info("S", helper.make_sequence_type_proto(helper.make_tensor_type_proto(T.INT64, [2])))
    opt = helper.make_value_info("O", helper.make_optional_type_proto(helper.make_tensor_type_proto(T.BOOL, None)))
    mp = helper.make_value_info("M", helper.make_map_type_proto(T.STRING, helper.make_tensor_type_proto(T.FLOAT, [])))
    y = helper.make_tensor_value_info("Y", T.FLOAT, ["N", None, 3])
    node = helper.make_node("Identity", ["X"], ["Y"], name="id")
    g = helper.make_graph([node], "special", [x, w, seq, opt, mp], [y], initializer=ts,
                          sparse_initializer=[sparse_lin, sparse_coo])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], producer_name="gen_import_facts")
    dense = {
        "sparse_lin": (T.FLOAT, [2, 3], [0, 1.5, 0, 0, -2.0, 4.0]),
        "sparse_coo": (T.INT32, [2, 3], [0, 0, 7, -9, 0, 0]),
    }
    rows = []
    for t in ts:
        vals = values_of(t)
        rows.append((t.name, t.data_type, list(t.dims), vals))
    for k, (dt, dims, vals) in dense.items():
        rows.append((k, dt, dims, [float(v) for v in vals]))
    return model.SerializeToString(), rows


def attr_model():
    T = TensorProto
    sub = helper.make_graph([helper.make_node("Add", ["a", "outer"], ["b"])], "body",
                            [helper.make_tensor_value_info("a", T.FLOAT, [1])],
                            [helper.make_tensor_value_info("b", T.FLOAT, [1])])
    sub2 = helper.make_graph([helper.make_node("Neg", ["outer"], ["c"])], "body2", [],
                             [helper.make_tensor_value_info("c", T.FLOAT, [1])])
    sp = helper.make_sparse_tensor(helper.make_tensor("spv", T.FLOAT, [1], [9.0]),
                                   helper.make_tensor("spi", T.INT64, [1], [2]), [4])
    node = helper.make_node("Everything", ["outer", ""], ["out", ""], name="every", domain="test.domain")
    node.attribute.extend([
        helper.make_attribute("f", 0.25),
        helper.make_attribute("i", -7),
        helper.make_attribute("s", b"nul\x00byte"),
        helper.make_attribute("t", helper.make_tensor("tv", T.INT64, [2], [5, -6])),
        helper.make_attribute("g", sub),
        helper.make_attribute("sp", sp),
        helper.make_attribute("tp", helper.make_tensor_type_proto(T.FLOAT16, [2, "K"])),
        helper.make_attribute("fs", [1.0, -0.5]),
        helper.make_attribute("is", [3, 4, 5]),
        helper.make_attribute("ss", [b"a", b"bc"]),
        helper.make_attribute("ts", [helper.make_tensor("t0", T.FLOAT, [1], [2.0]),
                                     helper.make_tensor("t1", T.INT32, [2], [1, 2])]),
        helper.make_attribute("gs", [sub2]),
        helper.make_attribute("sps", [sp]),
        helper.make_attribute("tps", [helper.make_sequence_type_proto(helper.make_tensor_type_proto(T.INT8, None))]),
    ])
    node.attribute[-1].type = AttributeProto.TYPE_PROTOS
    g = helper.make_graph([node], "attrs", [helper.make_tensor_value_info("outer", T.FLOAT, [1])],
                          [helper.make_tensor_value_info("out", T.FLOAT, [1])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("test.domain", 3)])
    return model.SerializeToString()


def external_models():
    """A model whose initializers live in 'weights.bin', plus broken variants."""
    T = TensorProto
    w1 = helper.make_tensor("w1", T.FLOAT, [2, 2], np.array([1.0, -2.0, 3.5, 1e-3], dtype=np.float32), raw=True)
    w2 = raw_tensor("w2", T.INT4, [3], [-3, 7, -8])
    g = helper.make_graph([helper.make_node("Add", ["X", "w1"], ["Y"])], "ext",
                          [helper.make_tensor_value_info("X", T.FLOAT, [2, 2])],
                          [helper.make_tensor_value_info("Y", T.FLOAT, [2, 2])], initializer=[w1, w2])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "model.onnx")
        onnx.save_model(model, p, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                        size_threshold=0)
        good = onnx.load(p, load_external_data=False)
        weights = open(os.path.join(d, "weights.bin"), "rb").read()
        loaded = onnx.load(p)
        vals = {t.name: values_of(t) for t in loaded.graph.initializer}

    def variant(key, value):
        m = onnx.ModelProto()
        m.CopyFrom(good)
        for e in m.graph.initializer[0].external_data:
            if e.key == key:
                e.value = value
        if key not in [e.key for e in m.graph.initializer[0].external_data]:
            m.graph.initializer[0].external_data.add(key=key, value=value)
        return m.SerializeToString()

    return {
        "good": good.SerializeToString(),
        "weights": weights,
        "dotdot": variant("location", "../weights.bin"),
        "absolute": variant("location", "/etc/passwd"),
        "missing": variant("location", "nothere.bin"),
        "badlen": variant("length", "12"),
        "pastend": variant("offset", "100000"),
        "link": variant("location", "link.bin"),
    }, vals


def broken_models():
    T = TensorProto
    x = helper.make_tensor_value_info("X", T.FLOAT, [1])
    y = helper.make_tensor_value_info("Y", T.FLOAT, [1])
    out = {}
    g = helper.make_graph([helper.make_node("Add", ["X", "ghost"], ["Y"], name="adder")], "g", [x], [y])
    out["undefined_input"] = helper.make_model(g)
    g = helper.make_graph([helper.make_node("Neg", ["X"], ["Y"], name="n1"), helper.make_node("Neg", ["X"], ["Y"], name="n2")],
                          "g", [x], [y])
    out["duplicate_output"] = helper.make_model(g)
    br = lambda name, v="tmp": helper.make_graph([helper.make_node("Neg", ["X"], [v])], name, [],  # noqa: E731
                                                 [helper.make_tensor_value_info(v, T.FLOAT, [1])])
    c = helper.make_tensor_value_info("C", T.BOOL, [])
    g = helper.make_graph([helper.make_node("If", ["C"], ["Y"], then_branch=br("then"), else_branch=br("else"))], "g",
                          [x, c], [y])
    out["sibling_collision"] = helper.make_model(g)
    bad = helper.make_tensor("w", T.FLOAT, [2], [1.0, 2.0])
    bad.data_type = 99
    out["bad_dtype"] = helper.make_model(helper.make_graph([helper.make_node("Neg", ["X"], ["Y"])], "g", [x], [y],
                                                           initializer=[bad]))
    f6 = helper.make_tensor("w6", T.FLOAT, [2], [1.0, 2.0])
    f6.data_type = 27
    out["float6"] = helper.make_model(helper.make_graph([helper.make_node("Neg", ["X"], ["Y"])], "g", [x], [y],
                                                        initializer=[f6]))
    short = helper.make_tensor("short_w", T.FLOAT, [2, 3], [1.0] * 6)
    del short.float_data[5]
    out["short_data"] = helper.make_model(helper.make_graph([helper.make_node("Neg", ["X"], ["Y"])], "g", [x], [y],
                                                            initializer=[short]))
    rawbad = helper.make_tensor("raw_w", T.INT32, [4], np.arange(4, dtype=np.int32), raw=True)
    rawbad.raw_data = rawbad.raw_data[:-1]
    out["short_raw"] = helper.make_model(helper.make_graph([helper.make_node("Neg", ["X"], ["Y"])], "g", [x], [y],
                                                           initializer=[rawbad]))
    n = helper.make_node("Neg", ["X"], ["Y"], name="refnode")
    a = AttributeProto(name="alpha", ref_attr_name="outer_alpha", type=AttributeProto.FLOAT)
    n.attribute.append(a)
    out["ref_attr"] = helper.make_model(helper.make_graph([n], "g", [x], [y]))
    out["no_graph"] = onnx.ModelProto(ir_version=8)
    out["undefined_output"] = helper.make_model(helper.make_graph([helper.make_node("Neg", ["X"], ["Z"])], "g", [x], [y]))
    vi = helper.make_tensor_value_info("X", 77, [1])
    out["bad_input_type"] = helper.make_model(helper.make_graph([helper.make_node("Neg", ["X"], ["Y"])], "g", [vi], [y]))
    # a main-graph node reading a value that only exists inside an If branch
    c = helper.make_tensor_value_info("C", T.BOOL, [])
    g = helper.make_graph([helper.make_node("If", ["C"], ["Z"], then_branch=br("then"), else_branch=br("else", "tmp2")),
                           helper.make_node("Add", ["Z", "tmp"], ["Y"], name="leaky")], "g", [x, c], [y])
    out["subgraph_leak"] = helper.make_model(g)
    return {k: v.SerializeToString() for k, v in out.items()}


def unsorted_model():
    """Nodes listed consumer first: valid input for FlagOS, which sorts later."""
    T = TensorProto
    g = helper.make_graph([helper.make_node("Relu", ["mid"], ["Y"], name="second"),
                           helper.make_node("Neg", ["X"], ["mid"], name="first")], "g",
                          [helper.make_tensor_value_info("X", T.FLOAT, [2])],
                          [helper.make_tensor_value_info("Y", T.FLOAT, [2])],
                          value_info=[helper.make_tensor_value_info("mid", T.FLOAT, [2])])
    return helper.make_model(g).SerializeToString()


def main():
    lines = ["/* Generated by tests/tools/gen_import_facts.py from the ONNX conformance data and",
             " * hand-built models, with the Python onnx package " + onnx.__version__ + ". Do not edit. */",
             "#ifndef ONNX_IMPORT_FACTS_H", "#define ONNX_IMPORT_FACTS_H", "#include <math.h>", "",
             "typedef struct { int kind, dtype, rank; } type_fact_t; /* kind: 0 tensor 1 seq 2 opt 3 map 4 none */",
             "typedef struct {", "  const char *suite, *test;",
             "  int nodes, nodes_total, inputs, outputs, inits, subgraphs;",
             "  const char *first_op, *last_op;", "  long long opset, ir_version;", "  type_fact_t in0, out0;",
             "  const char *in0_name, *out0_name;", "} model_fact_t;", "",
             "static const model_fact_t k_model_facts[] = {"]
    rows = model_facts()
    lines += rows + ["};", f"#define N_MODEL_FACTS {len(rows)}", ""]

    special, rows = special_inits()
    lines.append(c_bytes("k_special_model", special))
    lines += ["typedef struct { const char *name; int dtype; int rank; long long dims[4]; int n; const double *vals; } init_fact_t;"]
    entries = []
    for i, (name, dt, dims, vals) in enumerate(rows):
        if vals is not None:
            lines.append(f"static const double k_vals_{i}[] = {{" + ", ".join(c_double(v) for v in vals) + (
                "" if vals else "0") + "};")
        dims4 = (dims + [0, 0, 0, 0])[:4]
        entries.append("  {%s, %d, %d, {%s}, %d, %s}," % (c_str(name), dt, len(dims), ", ".join(map(str, dims4)),
                                                         len(vals) if vals is not None else -1,
                                                         f"k_vals_{i}" if vals is not None else "0"))
    lines += ["static const init_fact_t k_init_facts[] = {"] + entries + ["};", ""]

    lines.append(c_bytes("k_attr_model", attr_model()))
    ext, ext_vals = external_models()
    for k, v in ext.items():
        lines.append(c_bytes(f"k_ext_{k}", v))
    lines.append("static const double k_ext_w1[] = {" + ", ".join(c_double(v) for v in ext_vals["w1"]) + "};")
    lines.append("static const double k_ext_w2[] = {" + ", ".join(c_double(v) for v in ext_vals["w2"]) + "};")
    lines.append(c_bytes("k_unsorted_model", unsorted_model()))
    for k, v in broken_models().items():
        lines.append(c_bytes(f"k_broken_{k}", v))
    lines += ["", "#endif", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {OUT}: {len(model_facts())} models")


if __name__ == "__main__":
    main()
