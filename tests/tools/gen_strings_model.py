#!/usr/bin/env python3
"""Writes tests/data/strings/strings.onnx, a small model that takes string
tensors as inputs and runs every string path of the runtime (StringNormalizer,
StringConcat with a string initializer, RegexFullMatch, Equal on strings,
LabelEncoder with string keys, StringSplit, Cast and CastLike between strings
and numbers in both directions), and
tests/unit/strings_facts.h with its inputs and the outputs computed by ONNX's
reference implementation (onnx.reference) and checked against onnxruntime where
onnxruntime implements the operator: tests/unit/test_strings.c feeds the inputs
through the C API and compares every output exactly.

Run from anywhere: python3 tests/tools/gen_strings_model.py
"""
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

try:
    import onnxruntime as ort
except ImportError:
    ort = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "tests", "data", "strings", "strings.onnx")
HEADER = os.path.join(ROOT, "tests", "unit", "strings_facts.h")

S, F, D, I64, I32, B = (TensorProto.STRING, TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64,
                        TensorProto.INT32, TensorProto.BOOL)

INPUTS = [
    ("words", S, [5], np.array(["The", "Quick", "brown", "the", "FOX"], dtype=object)),
    ("sentences", S, [3], np.array(["a b  c", "  hello ", "x"], dtype=object)),
    ("nums", F, [8], np.array([0.1, 1e6, -2.5, 1e-5, 123456.0, np.nan, -np.inf, 1e-4], dtype=np.float32)),
    ("nums64", D, [3], np.array([1e16, 0.1, 123456789.0], dtype=np.float64)),
    ("ints", I64, [3], np.array([-7, 0, 9007199254740993], dtype=np.int64)),
    ("flags", B, [2], np.array([True, False])),
    ("codes", S, [4], np.array(["3.5", "-INF", "1e3", " 42"], dtype=object)),
    ("codes_i", S, [3], np.array(["12", "-3", "+40"], dtype=object)),
]

NODES = [
    helper.make_node("StringNormalizer", ["words"], ["norm"], case_change_action="LOWER", is_case_sensitive=0,
                     stopwords=["the"]),
    helper.make_node("StringConcat", ["norm", "bang"], ["shout"]),
    helper.make_node("RegexFullMatch", ["shout"], ["match"], pattern=r"b\w+!|f.x!"),
    helper.make_node("Equal", ["words", "brown"], ["is_brown"]),
    helper.make_node("LabelEncoder", ["norm"], ["ids"], domain="ai.onnx.ml", keys_strings=["quick", "fox"],
                     values_int64s=[1, 2], default_int64=0),
    helper.make_node("StringSplit", ["sentences"], ["parts", "counts"], maxsplit=1),
    helper.make_node("Cast", ["nums"], ["nums_str"], to=S),
    helper.make_node("Cast", ["nums64"], ["nums64_str"], to=S),
    helper.make_node("Cast", ["ints"], ["ints_str"], to=S),
    helper.make_node("Cast", ["flags"], ["flags_str"], to=S),
    helper.make_node("Cast", ["codes"], ["codes_f"], to=F),
    helper.make_node("Cast", ["codes_i"], ["codes_i32"], to=I32),
    helper.make_node("CastLike", ["codes_f", "words"], ["codes_back"]),
]

INITS = [
    numpy_helper.from_array(np.array("!", dtype=object), "bang"),
    numpy_helper.from_array(np.array(["brown"], dtype=object), "brown"),
]

OUTPUTS = [("norm", S), ("shout", S), ("match", B), ("is_brown", B), ("ids", I64), ("parts", S), ("counts", I64),
           ("nums_str", S), ("nums64_str", S), ("ints_str", S), ("flags_str", S), ("codes_f", F),
           ("codes_i32", I32), ("codes_back", S)]


# Patterns whose RE2 and Python meaning agree on these subjects (ASCII for \w, \d, \s, \b).
REGEX_CASES = [
    (r"www\.[\w.-]+\.\bcom\b", ["www.google.com", "www.bbc.co.uk", "www.a-b.com", "www..com"]),
    (r"\d{3}-\d{4}", ["555-1234", "55-1234", "555-12345", "abc-defg"]),
    (r"[\d\s]+", ["1 2\t3", "", "12a"]),
    (r"a.*?b", ["axxb", "ab", "abx", "a\nb"]),
    (r"(?:ab)+|c", ["abab", "c", "abc", ""]),
    (r"(?i)hello", ["HeLLo", "hello!", "hellO"]),
    (r"x{2,3}", ["x", "xx", "xxx", "xxxx"]),
    (r"[^a-c]+", ["def", "dad", "xyz"]),
    (r"[]a]+", ["]a]", "a", "b"]),
    (r"[a\-z]+", ["a-z", "b", "-"]),
    (r"[\^x]", ["^", "x", "y"]),
    (r"\(\d+\)", ["(12)", "12", "()"]),
    (r"a\/b\.c", ["a/b.c", "a/bxc"]),
    (r"^ab$|^cd$", ["ab", "cd", "abcd"]),
    (r".{2}", ["\u7684\u7684", "ab", "abc", "\u00e9"]),
    (r"\w+@\w+\.(com|org)", ["me@example.org", "me@example.net", "@x.com"]),
    (r"(?P<year>\d{4})-\d\d", ["2024-05", "24-05"]),
    (r"\x41\t", ["A\t", "A "]),
    (r"\S+\s\S+", ["ab cd", "ab  cd", "abcd"]),
    (r"\Aab\z", ["ab", "abab"]),
]
REFUSED = [r"\p{L}+", r"(?=a)a", r"(a)\1", r"(?s).", r"[\D]", r"\Qa.b\E"]


def build(out_shapes=None):
    """out_shapes: the outputs' shapes once the reference has computed them (a graph output needs one)."""
    graph = helper.make_graph(
        NODES, "strings",
        [helper.make_tensor_value_info(n, t, shape) for n, t, shape, _ in INPUTS],
        [helper.make_tensor_value_info(n, t, out_shapes[n] if out_shapes else []) for n, t in OUTPUTS],
        initializer=INITS)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("ai.onnx.ml", 4)],
                              producer_name="gen_strings_model.py")
    model.ir_version = 9
    if out_shapes:
        onnx.checker.check_model(model)
    return model


def c_str(s):
    out = '"'
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch in '"\\':
            out += "\\" + ch
        elif 32 <= b < 127:
            out += ch
        else:
            out += "\\%03o" % b
    return out + '"'


def c_num(v):
    v = float(v)
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return repr(v)


def c_array(name, a):
    a = np.asarray(a)
    flat = a.reshape(-1).tolist()
    if a.dtype == object or a.dtype.kind in "US":
        body = ", ".join(c_str(x if isinstance(x, str) else x.decode()) for x in flat)
        ctype = "const char *const"
    elif a.dtype == np.bool_:
        body = ", ".join("1" if x else "0" for x in flat)
        ctype = "const uint8_t"
    elif a.dtype.kind in "iu":
        body = ", ".join("INT64_C(%d)" % x for x in flat)
        ctype = "const int64_t"
    else:
        body = ", ".join(c_num(x) for x in flat)
        ctype = "const double"
    dims = ", ".join(str(d) for d in a.shape)
    return ("static %s %s[] = {%s};\nstatic const int %s_rank = %d;\nstatic const int64_t %s_dims[] = {%s};\n"
            % (ctype, name, body or "0", name, a.ndim, name, dims or "0"))


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "f":
        return np.array_equal(a, b, equal_nan=True)
    return [str(x) for x in a.reshape(-1)] == [str(x) for x in b.reshape(-1)]


def main():
    feeds = {n: v for n, _, _, v in INPUTS}
    ref = dict(zip([n for n, _ in OUTPUTS], ReferenceEvaluator(build()).run(None, feeds)))
    model = build({n: list(ref[n].shape) for n, _ in OUTPUTS})
    os.makedirs(os.path.dirname(MODEL), exist_ok=True)
    onnx.save(model, MODEL)
    if ort is not None:
        # onnxruntime has no StringSplit/RegexFullMatch/StringConcat kernels in every build and formats floats
        # its own way; it checks the rest.
        for name in ["norm", "is_brown", "ids", "codes_f", "codes_i32"]:
            sub = onnx.utils.Extractor(model).extract_model([n for n, _, _, _ in INPUTS], [name])
            try:
                sess = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001
                print("onnxruntime cannot run %s: %s" % (name, e))
                continue
            need = {i.name for i in sess.get_inputs()}
            got = sess.run(None, {k: v for k, v in feeds.items() if k in need})[0]
            assert same(got, ref[name]), (name, got, ref[name])
    lines = ["/* Generated by tests/tools/gen_strings_model.py with onnx %s and numpy %s. Do not edit.\n"
             " * Inputs of tests/data/strings/strings.onnx and its outputs by onnx.reference. */"
             % (onnx.__version__, np.__version__),
             "#ifndef STRINGS_FACTS_H", "#define STRINGS_FACTS_H", "#include <math.h>", "#include <stdint.h>", ""]
    for n, _, _, v in INPUTS:
        lines.append(c_array("in_" + n, v))
    for n, _ in OUTPUTS:
        lines.append(c_array("out_" + n, ref[n]))
    import re
    lines.append("typedef struct { const char *pattern, *subject; int full_match; } regex_case_t;")
    lines.append("static const regex_case_t k_regex_cases[] = {")
    for pat, subjects in REGEX_CASES:
        for subj in subjects:
            py = pat.replace(r"\z", r"\Z")  # RE2's end of text is spelled \Z in Python
            lines.append("  {%s, %s, %d}," % (c_str(pat), c_str(subj), re.fullmatch(py, subj) is not None))
    lines.append("};")
    lines.append("static const char *const k_regex_refused[] = {%s};" % ", ".join(c_str(p) for p in REFUSED))
    lines.append("#endif")
    with open(HEADER, "w") as f:
        f.write("\n".join(lines) + "\n")
    for n, _ in OUTPUTS:
        print(n, ref[n].dtype, ref[n].shape, ref[n].reshape(-1).tolist())


if __name__ == "__main__":
    main()
