"""The kernels and matmul stages: single-operator ONNX models timed by FlagOS
(`flagos profile`: device time of the kernels) next to PyTorch eager and
torch.compile on tensors of the same shapes and value distribution, and
cuBLASLt called directly for MatMul."""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import common

F32, F16, BF16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
TORCH_DT = {F32: "float32", F16: "float16", BF16: "bfloat16"}
ESIZE = {F32: 4, F16: 2, BF16: 2}


def onnx_model(path, op, inputs, out_shape, out_dtype, attrs=None, inits=(), opset=21):
    """One node: inputs are (name, dtype, shape); inits are (name, numpy array)
    that become initializers (constant inputs such as ReduceSum's axes)."""
    ins = [helper.make_tensor_value_info(n, dt, s) for n, dt, s in inputs]
    node = helper.make_node(op, [n for n, _, _ in inputs] + [n for n, _ in inits], ["out"], **(attrs or {}))
    g = helper.make_graph([node], op.lower(), ins, [helper.make_tensor_value_info("out", out_dtype, out_shape)],
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    onnx.save(m, path)


def kernel_cases(small):
    """(name, description, onnx spec, torch fn builder, bytes moved). Each case
    reads and writes about 2 to 3 GiB (256 Mi float32 elements per tensor)."""
    E = 1 << (16 if small else 28)
    cases = []

    def rc(c):
        return [max(1, E // c), c]

    def add(name, desc, op, inputs, out_shape, torch_fn, nbytes, attrs=None, inits=(), opset=21):
        cases.append(dict(name=name, desc=desc, op=op, inputs=inputs, out_shape=out_shape, attrs=attrs or {},
                          inits=inits, opset=opset, torch_fn=torch_fn, bytes=nbytes))

    C = 256 if small else 16384
    s = rc(C)
    add("add_bcast", "x[%d,%d] + b[%d]" % (s[0], s[1], C), "Add", [("x", F32, s), ("b", F32, [C])], s,
        lambda t, F, x, b: x + b, 2 * E * 4 + C * 4)
    add("add", "x[%d,%d] + y[%d,%d]" % (s[0], s[1], s[0], s[1]), "Add", [("x", F32, s), ("y", F32, s)], s,
        lambda t, F, x, y: x + y, 3 * E * 4)
    add("gelu", "Gelu(x[%d,%d]) (erf)" % (s[0], s[1]), "Gelu", [("x", F32, s)], s,
        lambda t, F, x: F.gelu(x), 2 * E * 4, opset=20)
    for c in (1024, 4096, 16384, 32768):
        sh = rc(c)
        add("softmax_%dk" % (c // 1024), "Softmax(x[%d,%d], axis=-1)" % (sh[0], sh[1]), "Softmax", [("x", F32, sh)], sh,
            lambda t, F, x: t.softmax(x, -1), 2 * E * 4, attrs={"axis": -1})
    for c in (1024, 8192):
        sh = rc(c)
        add("layernorm_%dk" % (c // 1024), "LayerNormalization(x[%d,%d]) with scale, bias" % (sh[0], sh[1]),
            "LayerNormalization", [("x", F32, sh), ("scale", F32, [c]), ("bias", F32, [c])], sh,
            (lambda c: lambda t, F, x, w, b: F.layer_norm(x, (c,), w, b, 1e-5))(c), 2 * E * 4 + 2 * c * 4,
            attrs={"axis": -1, "epsilon": 1e-5}, opset=17)
    add("reducesum_last", "ReduceSum(x[%d,%d], axes=[1])" % (s[0], s[1]), "ReduceSum", [("x", F32, s)], [s[0]],
        lambda t, F, x: x.sum(-1), E * 4 + s[0] * 4, attrs={"keepdims": 0},
        inits=[("axes", np.array([1], np.int64))])
    add("reducesum_first", "ReduceSum(x[%d,%d], axes=[0])" % (s[0], s[1]), "ReduceSum", [("x", F32, s)], [s[1]],
        lambda t, F, x: x.sum(0), E * 4 + s[1] * 4, attrs={"keepdims": 0},
        inits=[("axes", np.array([0], np.int64))])
    n2 = 256 if small else 16384
    add("transpose_2d", "Transpose(x[%d,%d], perm=[1,0])" % (n2, n2), "Transpose", [("x", F32, [n2, n2])], [n2, n2],
        lambda t, F, x: x.t().contiguous(), 2 * n2 * n2 * 4, attrs={"perm": [1, 0]})
    b4 = [2, 32, 4, 256] if small else [16, 2048, 32, 256]
    add("transpose_0213", "Transpose(x[%s], perm=[0,2,1,3])" % ",".join(map(str, b4)), "Transpose",
        [("x", F32, b4)], [b4[0], b4[2], b4[1], b4[3]], lambda t, F, x: x.permute(0, 2, 1, 3).contiguous(),
        2 * E * 4, attrs={"perm": [0, 2, 1, 3]})
    return cases


def matmul_cases(small):
    sizes = (256, 512) if small else (4096, 8192)
    return [dict(name="matmul_%s_%d" % (dn, n), n=n, dtype=dt, dname=dn) for n in sizes for dt, dn in
            ((F16, "f16"), (BF16, "bf16"))]


def torch_inputs(torch, case, device):
    g = torch.Generator(device=device).manual_seed(0)
    return [torch.rand(s, generator=g, device=device, dtype=getattr(torch, TORCH_DT[dt])) * 2 - 1
            for _, dt, s in case["inputs"]]


def flagos_columns(cfg, res, stage, case, model, work_units, dl, runs, warmup, what):
    """FlagOS on cuda and (if enabled) OpenCL: kernel device time per run."""
    for target, dev in cfg.flagos_targets:
        impl = "flagos-" + target
        if dl.over(20):
            res.add(stage=stage, case=case, impl=impl, error="skipped: stage time limit")
            continue
        log = os.path.join(cfg.logdir, "%s-%s.log" % (stage, impl))
        d, err = common.flagos_profile(cfg, model, dev, runs, warmup, min(240, dl.left() - 10), log)
        if err:
            res.add(stage=stage, case=case, impl=impl, error=err)
            continue
        ms = d["kernel_ms_per_run"]
        res.add(stage=stage, case=case, impl=impl, ms=ms, **{what: work_units},
                extra={"wall_median_ms": d["median_ms"], "copy_ms_per_run": d["copy_ms_per_run"], "runs": d["runs"],
                       "device_name": d.get("name"), "groups": d.get("groups", [])})


def stage_kernels(cfg, res, dl):
    import torch
    import torch.nn.functional as F
    dev = cfg.device
    cases = kernel_cases(cfg.small)
    sel = [x for x in os.environ.get("BENCH_KERNELS", "").split(",") if x]
    if sel:
        cases = [c for c in cases if any(x in c["name"] for x in sel)]
    # The copy roof: a device-to-device copy of 1 GiB (read + write counted).
    n = 1 << (16 if cfg.small else 28)
    a = torch.empty(n, device=dev, dtype=torch.float32).uniform_(-1, 1)
    b = torch.empty_like(a)
    ms = common.cuda_loop_ms(torch, lambda: b.copy_(a), 20, 3)
    res.add(stage="kernels", case="copy", impl="torch", ms=ms, bytes=2 * n * 4,
            extra={"what": "device-to-device copy of %d float32 (torch copy_)" % n})
    del a, b
    for c in cases:
        model = os.path.join(cfg.work, "k_%s.onnx" % c["name"])
        onnx_model(model, c["op"], c["inputs"], c["out_shape"], F32, c["attrs"], c["inits"], c["opset"])
        xs = torch_inputs(torch, c, dev)
        fn = c["torch_fn"]
        try:
            ms = common.cuda_loop_ms(torch, lambda: fn(torch, F, *xs), 20, 3)
            res.add(stage="kernels", case=c["name"], impl="torch", ms=ms, bytes=c["bytes"], extra={"desc": c["desc"]})
        except Exception as e:  # noqa: BLE001 - the report says what failed
            res.add(stage="kernels", case=c["name"], impl="torch", error=repr(e)[:300])
        del xs
        torch.cuda.empty_cache()
        flagos_columns(cfg, res, "kernels", c["name"], model, c["bytes"], dl, 3, 1, "bytes")
    if cfg.compile:
        for c in cases:
            compile_column(cfg, res, "kernels", c["name"], dl, lambda: torch_inputs(torch, c, dev),
                           (lambda fn: lambda *xs: fn(torch, F, *xs))(c["torch_fn"]), bytes=c["bytes"])


def compile_column(cfg, res, stage, case, dl, make_inputs, fn, **work):
    import time
    import torch
    if dl.over(60):
        res.add(stage=stage, case=case, impl="torch.compile", error="skipped: stage time limit")
        return
    try:
        # Dynamo keys its cache by code object, and every case's function is the same lambda:
        # past torch._dynamo.config.cache_size_limit (8) recompiles it silently runs eager.
        torch._dynamo.reset()
        xs = make_inputs()
        # Under max-autotune's CUDA graphs an input that is not marked static is copied into the
        # graph's own buffer at every call, which would time a copy of each input too.
        for x in xs:
            torch._dynamo.mark_static_address(x)
        t0 = time.time()
        cf = torch.compile(fn, mode=cfg.compile_mode, dynamic=False)
        cf(*xs)
        common.sync(torch)
        ct = time.time() - t0
        ms = common.cuda_loop_ms(torch, lambda: cf(*xs), 20, 3)
        res.add(stage=stage, case=case, impl="torch.compile", ms=ms, extra={"compile_s": ct, "mode": cfg.compile_mode},
                **work)
        del xs
    except Exception as e:  # noqa: BLE001
        res.add(stage=stage, case=case, impl="torch.compile", error=repr(e)[:300])
    torch.cuda.empty_cache()


def stage_matmul(cfg, res, dl):
    import torch
    dev = cfg.device
    for c in matmul_cases(cfg.small):
        n, flops = c["n"], 2.0 * c["n"] ** 3
        tdt = getattr(torch, TORCH_DT[c["dtype"]])
        if os.path.exists(cfg.cublaslt):
            rc, out, _ = common.run([cfg.cublaslt, str(n), str(n), str(n), c["dname"], "20", "5"], 120,
                                    os.path.join(cfg.logdir, "matmul-cublaslt.log"))
            if rc == 0:
                d = json.loads(out.strip().splitlines()[-1])
                res.add(stage="matmul", case=c["name"], impl="cublaslt", ms=d["best_ms"], flops=flops, extra=d)
                res.add(stage="matmul", case=c["name"], impl="cublaslt-heuristic", ms=d["first_ms"], flops=flops)
            else:
                res.add(stage="matmul", case=c["name"], impl="cublaslt", error=common.error_text(out))
        else:
            res.add(stage="matmul", case=c["name"], impl="cublaslt", error="cublaslt_bench was not built")
        g = torch.Generator(device=dev).manual_seed(0)
        a = torch.rand(n, n, generator=g, device=dev, dtype=tdt) * 2 - 1
        b = torch.rand(n, n, generator=g, device=dev, dtype=tdt) * 2 - 1
        ms = common.cuda_loop_ms(torch, lambda: torch.matmul(a, b), 20, 5)
        res.add(stage="matmul", case=c["name"], impl="torch", ms=ms, flops=flops)
        del a, b
        torch.cuda.empty_cache()
        model = os.path.join(cfg.work, "k_%s.onnx" % c["name"])
        onnx_model(model, "MatMul", [("a", c["dtype"], [n, n]), ("b", c["dtype"], [n, n])], [n, n], c["dtype"])
        flagos_columns(cfg, res, "matmul", c["name"], model, flops, dl, 5, 1, "flops")
    if cfg.compile:
        for c in matmul_cases(cfg.small):
            n, tdt = c["n"], getattr(torch, TORCH_DT[c["dtype"]])

            def mk(n=n, tdt=tdt):
                g = torch.Generator(device=dev).manual_seed(0)
                return [torch.rand(n, n, generator=g, device=dev, dtype=tdt) * 2 - 1 for _ in range(2)]
            compile_column(cfg, res, "matmul", c["name"], dl, mk, lambda x, y: torch.matmul(x, y), flops=2.0 * n ** 3)
