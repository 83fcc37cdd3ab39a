#!/usr/bin/env python3
"""The model suite: exports each architecture of models.py from PyTorch to ONNX
(random weights, opset 17, TorchScript exporter, static shapes except for the
one model that tests `flagos compile --shape`), runs it through FlagOS
(`flagos compile` then `flagos run`, on the cpu) and through ONNX Runtime (no
graph optimizations) on the same inputs, and compares every output: floats
within rtol 1e-3 / atol 1e-4, integers exactly. The ONNX files, inputs and
outputs are written under WORK_DIR/<model>/; nothing is committed.

  run_models.py --flagos BUILD/flagos --work-dir DIR [MODEL ...] [--json FILE]
                [--seed N] [--opset N]

With no MODEL, runs them all. Prints one line per model (max absolute and
relative error per output; export, compile and run time) and exits non-zero if
any model failed. The JSON file holds the same per model, with the operators of
its exported graph.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

RTOL, ATOL = 1e-3, 1e-4
OPSET = 17


def export(case, path):
    import torch
    args = tuple(torch.from_numpy(v) for v in case.inputs.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # tracer warnings about Python control flow
        torch.onnx.export(case.module, args, path, opset_version=OPSET,
                          input_names=list(case.inputs), output_names=case.outputs,
                          dynamic_axes=case.dynamic_axes or None, do_constant_folding=True,
                          dynamo=False)
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    missing = set(case.ops) - graph_ops(model.graph)
    if missing:
        raise RuntimeError(f"the exported graph lacks {', '.join(sorted(missing))}: "
                           "it no longer tests what this model is here for")
    for name in case.dynamic_axes:
        io = {v.name: v for v in list(model.graph.input) + list(model.graph.output)}
        if name in io and not any(d.dim_param for d in io[name].type.tensor_type.shape.dim):
            raise RuntimeError(f"{name} was exported without a symbolic dimension")
    return sorted(graph_ops(model.graph))


def graph_ops(graph):
    ops = set()
    for n in graph.node:
        ops.add(n.op_type)
        for a in n.attribute:
            for g in list(a.graphs) + ([a.g] if a.HasField("g") else []):
                ops |= graph_ops(g)
    return ops


def run_ort(path, inputs, outputs):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    # The reference runs the graph as exported: no ORT rewrites (fusions) between.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return dict(zip(outputs, sess.run(outputs, inputs)))


def flagos_compile(flagos, model_dir, path, shapes, env, tag="model"):
    bundle = os.path.join(model_dir, tag + ".flagos")
    cache = os.path.join(model_dir, tag + "-kernel-cache")
    shutil.rmtree(cache, ignore_errors=True)      # cold compile: the time is honest
    cmd = [flagos, "compile", path, "-o", bundle, "--target", "cpu", "--cache-dir", cache]
    for name, dims in shapes.items():
        cmd += ["--shape", f"{name}={dims}"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"flagos compile failed (exit {p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return bundle, time.perf_counter() - t0


def flagos_run(flagos, model_dir, bundle, inputs, outputs, env, tag="model"):
    in_dir, out_dir = os.path.join(model_dir, tag + "-inputs"), os.path.join(model_dir, tag + "-flagos-out")
    os.makedirs(in_dir, exist_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [flagos, "run", bundle, "--output-dir", out_dir]
    for name, value in inputs.items():
        f = os.path.join(in_dir, name + ".npy")
        np.save(f, value)
        cmd += ["--input", f"{name}={f}"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"flagos run failed (exit {p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    t_run = time.perf_counter() - t0
    # The process's wall time includes loading the bundle; flagos reports the run itself.
    m = re.search(r"run time: ([0-9.]+) ms", p.stdout)
    t_exec = float(m.group(1)) / 1000 if m else None
    return {n: np.load(os.path.join(out_dir, n + ".npy")) for n in outputs}, t_run, t_exec


def compare(name, got, ref):
    """Returns (ok, message, max_abs, max_rel)."""
    if got.shape != ref.shape:
        return False, f"{name}: shape {got.shape} != reference {ref.shape}", None, None
    if got.dtype != ref.dtype:
        return False, f"{name}: dtype {got.dtype} != reference {ref.dtype}", None, None
    if not np.issubdtype(ref.dtype, np.floating):
        bad = int(np.count_nonzero(got != ref))
        return bad == 0, f"{name}: {bad} of {ref.size} elements differ (exact)", 0.0 if bad == 0 else None, None
    if ref.size == 0:
        return True, f"{name}: empty", 0.0, 0.0
    if np.nanmax(np.abs(ref)) < 100 * ATOL:
        # atol would accept anything: the model's weights need rescaling.
        return False, f"{name}: reference output is below {100 * ATOL:g}, the comparison means nothing", None, None
    g, r = got.astype(np.float64), ref.astype(np.float64)
    nan_ok = np.array_equal(np.isnan(g), np.isnan(r))
    fin = np.isfinite(r) & np.isfinite(g)
    inf_ok = np.array_equal(g[~fin & ~np.isnan(r)], r[~fin & ~np.isnan(r)])
    err = np.abs(g[fin] - r[fin])
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float((err / np.maximum(np.abs(r[fin]), np.finfo(np.float32).tiny)).max()) if err.size else 0.0
    bad = int(np.count_nonzero(err > ATOL + RTOL * np.abs(r[fin])))
    ok = nan_ok and inf_ok and bad == 0
    msg = f"{name}: max abs {max_abs:.3g}, max rel {max_rel:.3g}"
    if bad:
        msg += f", {bad} of {ref.size} outside rtol {RTOL:g}/atol {ATOL:g}"
    if not nan_ok or not inf_ok:
        msg += ", NaN/Inf positions differ"
    return ok, msg, max_abs, max_rel


def run_one(key, builder, flagos, work, env, seed):
    model_dir = os.path.join(work, key)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "model.onnx")
    res = {"model": key, "ok": False}
    try:
        case = builder(seed=seed)
        t0 = time.perf_counter()
        res["onnx_ops"] = export(case, path)
        res["export_s"] = time.perf_counter() - t0
        ref = run_ort(path, case.inputs, case.outputs)
        bundle, res["compile_s"] = flagos_compile(flagos, model_dir, path, case.shapes, env)
        got, res["run_s"], res["exec_s"] = flagos_run(flagos, model_dir, bundle, case.inputs, case.outputs, env)
        runs = [("", got, ref)]
        if case.unbound_inputs:
            # The same model compiled with its symbolic dimensions left open, run
            # at other sizes.
            bundle, _ = flagos_compile(flagos, model_dir, path, {}, env, tag="unbound")
            for i, inputs in enumerate(case.unbound_inputs):
                got, _, _ = flagos_run(flagos, model_dir, bundle, inputs, case.outputs, env, tag=f"unbound{i}")
                shape = "x".join(map(str, next(iter(inputs.values())).shape))
                runs.append((f"unbound bundle, {shape}: ", got, run_ort(path, inputs, case.outputs)))
        msgs, ok = [], True
        res["outputs"] = {}
        for prefix, got, ref in runs:
            for n in case.outputs:
                o, m, a, r = compare(n, got[n], ref[n])
                ok &= o
                msgs.append(prefix + m)
                res["outputs"][prefix + n] = {"ok": o, "max_abs": a, "max_rel": r, "shape": list(ref[n].shape)}
        res["ok"], res["detail"] = ok, "; ".join(msgs)
    except Exception as e:     # one model's failure must not hide the others' results
        res["detail"] = f"{type(e).__name__}: {e}"
    return res


def main():
    global OPSET
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="models to run (default: all)")
    ap.add_argument("--flagos", required=True, help="the flagos command line binary")
    ap.add_argument("--work-dir", required=True, help="where the exported models and outputs go")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--seed", type=int, default=7, help="seed of the weights and inputs (default 7)")
    ap.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset to export to (default {OPSET})")
    ap.add_argument("--check-list", action="store_true",
                    help="only check that MODELS names exactly the models of models.py")
    a = ap.parse_args()

    import importlib.util
    missing = [m for m in ("torch", "torchvision", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"error: the model suite needs {', '.join(missing)}: python3 -m pip install -r "
              f"{os.path.join(HERE, 'requirements.txt')} (scripts/setup.sh does)", file=sys.stderr)
        return 2
    OPSET = a.opset
    import torch
    from models import MODELS
    if a.check_list:
        extra, missing = set(a.models) - set(MODELS), set(MODELS) - set(a.models)
        if extra or missing:
            print(f"error: tests/models/models.cmake's list and models.py differ: not in models.py: "
                  f"{sorted(extra)}, not in models.cmake: {sorted(missing)}", file=sys.stderr)
            return 1
        print(f"models.cmake lists the {len(MODELS)} models of models.py")
        return 0
    torch.set_num_threads(1)
    names = a.models or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    env = dict(os.environ)
    results = []
    for n in names:
        r = run_one(n, MODELS[n], os.path.abspath(a.flagos), os.path.abspath(a.work_dir), env, a.seed)
        t = ""
        if "run_s" in r:
            execs = f", of which executing {r['exec_s'] * 1000:.1f}ms" if r["exec_s"] is not None else ""
            t = f" (export {r['export_s']:.1f}s, compile {r['compile_s']:.1f}s, run {r['run_s']:.2f}s{execs})"
        print(f"{'PASS' if r['ok'] else 'FAIL'} {n}{t}: {r['detail']}", flush=True)
        results.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    passed = sum(r["ok"] for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
