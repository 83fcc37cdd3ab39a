#!/usr/bin/env python3
"""Writes the example model examples/mlp.onnx (a two-layer perceptron with fixed
random weights), an input examples/mlp_input.npy, and the output ONNX Runtime or
NumPy computes for it, examples/mlp_expected.npy. Run again to regenerate."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
w1 = rng.standard_normal((16, 32)).astype(np.float32) * 0.3
b1 = rng.standard_normal((32,)).astype(np.float32) * 0.1
w2 = rng.standard_normal((32, 4)).astype(np.float32) * 0.3
b2 = rng.standard_normal((4,)).astype(np.float32) * 0.1

nodes = [
    helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
    helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
    helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
    helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
    helper.make_node("Add", ["h3", "b2"], ["y"], name="fc2_bias"),
]
graph = helper.make_graph(
    nodes, "mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
     numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="flagos-example")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, os.path.join(here, "mlp.onnx"))

x = rng.standard_normal((3, 16)).astype(np.float32)
np.save(os.path.join(here, "mlp_input.npy"), x)
y = np.maximum(x @ w1 + b1, 0) @ w2 + b2
np.save(os.path.join(here, "mlp_expected.npy"), y.astype(np.float32))
print("wrote mlp.onnx, mlp_input.npy, mlp_expected.npy")
