#!/usr/bin/env python3
"""One bundle, three chips: a small model compiled once for cpu, cuda and opencl
(`flagos compile --target cpu,cuda,opencl`) and run with `flagos run --device`
on every device kind present, each compared with ONNX Runtime's outputs.

    test_three_chips.py FLAGOS_BINARY WORK_DIR

The model (built here with onnx's helper) has Conv (im2col + the gemm library
call), MatMul (2-D and batched), Gemm with transB and a bias, Add, Relu,
LayerNormalization, Softmax, Reshape and Transpose. cpu must run; opencl runs
where `flagos devices` lists an OpenCL device (PoCL in CI), twice: with the
library call (CLBlast, FLAGOS_OPENCL_BLAS=1: by default it is off on CPU
devices) and with FLAGOS_OPENCL_BLAS=0 (the generated kernels),
and where libclblast.so.1 can be opened the CLBlast run must have used it;
cuda runs where a CUDA device is present. Each device kind that is absent is
reported as skipped. Exit 0 when every run matched, 1 otherwise, 77 (skipped)
without numpy, onnx or onnxruntime.
"""
import ctypes
import os
import re
import subprocess
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # the references are test-only Python packages (scripts/setup.sh)
    print(f"SKIPPED: {e} (needs numpy, onnx and onnxruntime)")
    sys.exit(77)

RTOL, ATOL = 1e-4, 1e-5


def build_model(rng):
    def init(name, shape, scale=0.2):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        init("W", (8, 3, 3, 3)), init("Wb", (8,)),          # Conv 3 -> 8 channels, 3x3, pad 1
        init("M1", (64, 96)), init("M1b", (96,)),           # MatMul [8,64] x [64,96]
        init("M2", (2, 96, 24), 0.1),                      # batched MatMul [2,4,96] x [2,96,24]
        init("G", (40, 48), 0.1), init("Gb", (40,)),       # Gemm transB: [4,48] x [40,48]^T + bias
        numpy_helper.from_array(np.array([8, 64], np.int64), "s1"),
        numpy_helper.from_array(np.array([2, 4, 96], np.int64), "s2"),
        numpy_helper.from_array(np.array([4, 48], np.int64), "s3"),
        numpy_helper.from_array(np.ones(96, np.float32) * 1.5, "ln_s"),
        numpy_helper.from_array(np.full(96, 0.25, np.float32), "ln_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["X", "W", "Wb"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "s1"], ["f"]),                     # [8, 64]
        helper.make_node("MatMul", ["f", "M1"], ["m1"]),                     # [8, 96]
        helper.make_node("Add", ["m1", "M1b"], ["a1"]),
        helper.make_node("Add", ["a1", "Y"], ["a2"]),                        # second input
        helper.make_node("LayerNormalization", ["a2", "ln_s", "ln_b"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("Reshape", ["ln", "s2"], ["l3"]),                   # [2, 4, 96]
        helper.make_node("MatMul", ["l3", "M2"], ["m2"]),                    # [2, 4, 24]
        helper.make_node("Transpose", ["m2"], ["t"], perm=[1, 0, 2]),        # [4, 2, 24]
        helper.make_node("Reshape", ["t", "s3"], ["g_in"]),                  # [4, 48]
        helper.make_node("Gemm", ["g_in", "G", "Gb"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["g"], ["P"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "three_chips",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3, 8, 4]),
         helper.make_tensor_value_info("Y", TensorProto.FLOAT, [8, 96])],
        [helper.make_tensor_value_info("P", TensorProto.FLOAT, [4, 40]),
         helper.make_tensor_value_info("ln", TensorProto.FLOAT, [8, 96])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def device_counts(flagos, env):
    out = subprocess.run([flagos, "devices"], env=env, capture_output=True, text=True)
    counts = {}
    for m in re.finditer(r"^(\w+) \(plugin [^)]*\): (\d+) device", out.stdout, re.M):
        counts[m.group(1)] = int(m.group(2))
    return counts, out.stdout + out.stderr


def run(cmd, env, what):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL {what}: exit {p.returncode}\n  {' '.join(cmd)}\n{p.stdout}{p.stderr}")
        return False
    return True


def compare(what, outdir, ref):
    ok = True
    for name, want in ref.items():
        path = os.path.join(outdir, name + ".npy")
        if not os.path.exists(path):
            print(f"FAIL {what}: no output {name}")
            ok = False
            continue
        got = np.load(path)
        if got.shape != want.shape or got.dtype != want.dtype:
            print(f"FAIL {what}: {name} is {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}")
            ok = False
        elif not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            err = np.max(np.abs(got.astype(np.float64) - want))
            print(f"FAIL {what}: {name} differs from ONNX Runtime (max abs error {err:.3g})")
            ok = False
        else:
            err = np.max(np.abs(got.astype(np.float64) - want))
            print(f"ok   {what}: {name} matches ONNX Runtime (max abs error {err:.3g})")
    return ok


def clblast_loadable():
    name = os.environ.get("FLAGOS_CLBLAST") or "libclblast.so.1"
    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        return False


def main():
    flagos, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(3)
    model = build_model(rng)
    mpath = os.path.join(work, "model.onnx")
    onnx.save(model, mpath)
    feeds = {"X": rng.standard_normal((2, 3, 8, 4)).astype(np.float32),
             "Y": rng.standard_normal((8, 96)).astype(np.float32)}
    for k, v in feeds.items():
        np.save(os.path.join(work, k + ".npy"), v)
    sess = ort.InferenceSession(mpath, providers=["CPUExecutionProvider"])
    ref = dict(zip(["P", "ln"], sess.run(["P", "ln"], feeds)))

    env = dict(os.environ)
    bundle = os.path.join(work, "model.flagos")
    if not run([flagos, "compile", mpath, "-o", bundle, "--target", "cpu,cuda,opencl"], env, "compile"):
        return 1
    counts, listing = device_counts(flagos, env)
    inputs = [a for k in feeds for a in ("-i", f"{k}={os.path.join(work, k + '.npy')}")]
    ok, ran, skipped = True, [], []

    def run_on(device, what, extra_env=None):
        e = dict(env, **(extra_env or {}))
        outdir = os.path.join(work, "out-" + what.replace(" ", "-").replace("=", "-"))
        if not run([flagos, "run", bundle, *inputs, "--device", device, "-o", outdir], e, what):
            return False
        return compare(what, outdir, ref)

    ok = run_on("cpu", "cpu") and ok
    ran.append("cpu")

    if counts.get("opencl", 0) > 0:
        log = os.path.join(work, "clblast.log")
        if os.path.exists(log):
            os.remove(log)
        ok = run_on("opencl", "opencl", {"FLAGOS_OPENCL_BLAS": "1", "FLAGOS_OPENCL_BLAS_LOG": log}) and ok
        text = open(log).read() if os.path.exists(log) else ""
        # The call goes to FlagOS's own OpenCL GEMM on GPUs (ocl_gemm.c), to
        # CLBlast elsewhere; either writes a line per product it ran.
        ours, calls = text.count("by flagos"), text.count("by CLBlast")
        if ours or clblast_loadable():
            # Conv, two MatMuls and the Gemm each carry the gemm library call.
            if ours + calls < 4:
                print(f"FAIL opencl: the gemm library call ran {ours + calls} of the 4 products "
                      f"({ours} by FlagOS's kernels, {calls} by CLBlast)")
                ok = False
            else:
                print(f"ok   opencl: {ours + calls} gemm calls ran ({ours} by FlagOS's kernels, {calls} by CLBlast)")
        else:
            print("note opencl: libclblast.so.1 cannot be opened: the generated kernels ran the products")
        ok = run_on("opencl", "opencl FLAGOS_OPENCL_BLAS=0", {"FLAGOS_OPENCL_BLAS": "0"}) and ok
        ran.append("opencl")
    else:
        skipped.append("opencl (no OpenCL device)")

    if counts.get("cuda", 0) > 0:
        ok = run_on("cuda", "cuda") and ok
        ran.append("cuda")
    else:
        skipped.append("cuda (no CUDA device)" if "cuda" in counts else "cuda (no cuda plugin)")

    print("ran on: " + ", ".join(ran))
    for s in skipped:
        print("SKIPPED " + s)
    if skipped:
        print("flagos devices:\n" + listing.rstrip())
    print("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
