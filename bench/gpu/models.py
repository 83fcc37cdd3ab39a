"""The models stage: ResNet-50, BERT-base and GPT-2 small with random weights
(seeded, so every process builds the same model), exported once per run with
torch.onnx.export, then timed as PyTorch eager, torch.compile (in a child
process with a time limit), and FlagOS `flagos run` on cuda and OpenCL, with the
outputs checked against PyTorch eager's.

Also the child process: `python3 models.py compile-one MODEL DTYPE BATCH DIR`."""
import glob
import json
import os
import re
import sys
import time

import numpy as np
import torch

import common

# FP32 on every side: FlagOS computes float32 in float32 unless
# FLAGOS_ALLOW_TF32=1, and PyTorch's convolutions (eager and torch.compile)
# would otherwise use TF32 (cudnn.allow_tf32 defaults to True; matmul's TF32
# is off by default).
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

BATCHES = {"resnet50": (1, 64), "bert": (1, 32), "gpt2": (1, 8)}
SEQ = 128


class Wrap(torch.nn.Module):
    """A transformers model as a function of input_ids returning a tuple."""

    def __init__(self, core, outs, no_cache):
        super().__init__()
        self.core, self.outs, self.no_cache = core, outs, no_cache

    def forward(self, input_ids):
        o = self.core(input_ids=input_ids, use_cache=False) if self.no_cache else self.core(input_ids=input_ids)
        return tuple(getattr(o, k) for k in self.outs)


def build(torch, name, dtype, batch, device, small=False):
    """The model (eval, on device, in dtype), its inputs {name: tensor} and
    output names. Weights come from a fixed seed."""
    torch.manual_seed(0)
    tdt = {"f32": torch.float32, "f16": torch.float16}[dtype]
    seq = 16 if small else SEQ
    if name == "resnet50":
        import torchvision
        m = torchvision.models.resnet50(weights=None)
        side = 64 if small else 224
        x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1
        inputs, outs = {"x": x.to(tdt)}, ["logits"]
        wrap = m
    elif name in ("bert", "gpt2"):
        import transformers
        if name == "bert":
            cfg = transformers.BertConfig()
            if small:
                cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2,
                                              intermediate_size=256)
            core = transformers.BertModel(cfg)
            outs = ["last_hidden_state", "pooler_output"]
        else:
            cfg = transformers.GPT2Config(use_cache=False)
            if small:
                cfg = transformers.GPT2Config(use_cache=False, n_layer=2, n_embd=128, n_head=2)
            core = transformers.GPT2Model(cfg)
            outs = ["last_hidden_state"]
        ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1))
        inputs = {"input_ids": ids}
        wrap = Wrap(core, outs, name == "gpt2")
    else:
        raise ValueError("unknown model " + name)
    wrap = wrap.eval().to(device=device, dtype=tdt)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    return wrap, inputs, outs


def as_tuple(o):
    return tuple(o) if isinstance(o, (tuple, list)) else (o,)


def product_types(path):
    """{(op, element type name): count} of the products (MatMul, Gemm, Conv) in
    an ONNX file, by the type of their first input."""
    import collections
    import onnx
    m = onnx.shape_inference.infer_shapes(onnx.load(path, load_external_data=False))
    types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.input)
             + list(m.graph.output)}
    types.update({t.name: t.data_type for t in m.graph.initializer})
    return collections.Counter((n.op_type, onnx.TensorProto.DataType.Name(types.get(n.input[0], 0)))
                               for n in m.graph.node if n.op_type in ("MatMul", "Gemm", "Conv"))


def export(torch, model, inputs, outs, path, log, exporter, dtype=None):
    """torch.onnx.export, TorchScript-based (dynamo=False) first where the
    installed torch still has it, then the dynamo exporter; returns
    (exporter used, None) or (None, error). With dtype ("f32", "f16"), an
    export whose products (MatMul, Gemm, Conv) read another float type is
    passed over for the next exporter: the TorchScript exporter of torch 2.11
    wrote BERT-base in float16 with 92 of its 96 MatMuls in float32, which
    would time another model than the one PyTorch runs. If every exporter
    does that, the last such export is kept and the error says so."""
    args = tuple(inputs.values())
    errors = []
    want = {"f32": "FLOAT", "f16": "FLOAT16"}.get(dtype)
    kept = None
    order = {"auto": ("legacy", "dynamo"), "legacy": ("legacy",), "dynamo": ("dynamo",)}[exporter]
    for how in order:
        t0 = time.time()
        try:
            with torch.no_grad():
                if how == "legacy":
                    torch.onnx.export(model, args, path, input_names=list(inputs), output_names=outs, opset_version=17,
                                      do_constant_folding=True, dynamo=False)
                else:
                    torch.onnx.export(model, args, path, input_names=list(inputs), output_names=outs, dynamo=True,
                                      external_data=False)
            with open(log, "a") as f:
                f.write("exported %s with %s in %.1f s\n" % (path, how, time.time() - t0))
            if want:
                other = {k: v for k, v in product_types(path).items() if k[1] != want}
                if other:
                    errors.append("%s: products not in %s: %s" % (how, want, ", ".join(
                        "%s %s x%d" % (k[0], k[1], v) for k, v in sorted(other.items()))))
                    with open(log, "a") as f:
                        f.write(errors[-1] + "\n")
                    kept = path + "." + how
                    os.replace(path, kept)
                    continue
            return how, None
        except Exception as e:  # noqa: BLE001 - the next exporter, or the report, takes over
            errors.append("%s: %s" % (how, repr(e)[:300]))
            with open(log, "a") as f:
                f.write("export %s with %s failed: %r\n" % (path, how, e))
    if kept:
        os.replace(kept, path)
        return kept.rsplit(".", 1)[1], "; ".join(errors)
    return None, "; ".join(errors)


def onnx_output_names(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return [o.name for o in m.graph.output]


RUN_RE = re.compile(r"run time: (?:median )?([0-9.]+) ms(?: over (\d+) runs)?")
MIN_RE = re.compile(r"run time: median [0-9.]+ ms over \d+ runs \(min ([0-9.]+)")


def flagos_model(cfg, res, key, onnx_path, target, device, in_files, ref, dl, log):
    """Compiles a bundle for one target, runs it once to check the outputs and
    measure, then `--runs N` with N chosen to fit about 20 s (at most 61)."""
    impl = "flagos-" + target
    bundle = onnx_path[:-5] + "." + target + ".flagos"
    if not os.path.exists(bundle):
        t0 = time.time()
        rc, out, _ = common.run([cfg.flagos, "compile", onnx_path, "-o", bundle, "--target", target],
                                min(float(os.environ.get("BENCH_FLAGOS_COMPILE_TIMEOUT", "300")), dl.left() - 10), log)
        if rc != 0:
            res.add(stage="models", case=key, impl=impl, error="compile: " + common.error_text(out))
            return
        ctime = time.time() - t0
    else:
        ctime = None
    outdir = os.path.join(os.path.dirname(bundle), "out_" + target)
    os.makedirs(outdir, exist_ok=True)
    for f in glob.glob(os.path.join(outdir, "*.npy")):
        os.remove(f)
    base = [cfg.flagos, "run", bundle, "--device", device] + sum((["-i", f] for f in in_files), [])
    # The probe: outputs for the check, and the time of a warm run (its min:
    # the first run of a process pays CUDA's and the libraries' start-up).
    rc, out, probe_s = common.run(base + ["--runs", "3", "-o", outdir], min(180, dl.left() - 10), log)
    if rc != 0:
        res.add(stage="models", case=key, impl=impl, error="run: " + common.error_text(out))
        return
    errs = {}
    names = onnx_output_names(onnx_path)
    for i, nm in enumerate(names):
        p = os.path.join(outdir, nm + ".npy")
        errs[nm] = common.err_stats(np.load(p), ref[i]) if os.path.exists(p) else {"error": "no output file"}
    m = MIN_RE.search(out) or RUN_RE.search(out)
    one = float(m.group(1)) / 1e3 if m else probe_s
    runs = int(max(5, min(61, 20.0 / max(one, 1e-4))))
    rc, out, _ = common.run(base + ["--runs", str(runs)], min(240, dl.left() - 5), log)
    m = RUN_RE.search(out)
    if rc != 0 or not m:
        res.add(stage="models", case=key, impl=impl, error="timed run: " + common.error_text(out), extra={"check": errs})
        return
    res.add(stage="models", case=key, impl=impl, ms=float(m.group(1)),
            extra={"runs": int(m.group(2) or 1), "check": errs, "compile_s": ctime, "device": device})


def stage_models(cfg, res, dl):
    dev = cfg.device
    names = os.environ.get("BENCH_MODELS", "resnet50,bert,gpt2").split(",")
    dtypes = os.environ.get("BENCH_DTYPES", "f32,f16").split(",")
    batch_sel = os.environ.get("BENCH_BATCHES", "")
    exporter = os.environ.get("BENCH_EXPORTER", "auto")
    runs = int(os.environ.get("BENCH_TORCH_RUNS", "100"))
    log = os.path.join(cfg.logdir, "models.log")
    todo = []
    for name in names:
        for dt in dtypes:
            for b in BATCHES[name]:
                if batch_sel and str(b) not in batch_sel.split(","):
                    continue
                todo.append((name, dt, b))
    done = []
    for name, dt, b in todo:
        key = "%s_%s_b%d" % (name, dt, b)
        if dl.over(30):
            res.add(stage="models", case=key, impl="all", error="skipped: stage time limit")
            continue
        d = os.path.join(cfg.work, key)
        os.makedirs(d, exist_ok=True)
        try:
            model, inputs, outs = build(torch, name, dt, b, dev, cfg.small)
        except Exception as e:  # noqa: BLE001
            res.add(stage="models", case=key, impl="torch", error="build: " + repr(e)[:300])
            continue
        in_files = []
        for k, v in inputs.items():
            p = os.path.join(d, k + ".npy")
            np.save(p, v.cpu().numpy())
            in_files.append(p)
        with torch.no_grad():
            ref = [o.float().cpu().numpy() for o in as_tuple(model(*inputs.values()))]
        for i, r in enumerate(ref):
            np.save(os.path.join(d, "ref%d.npy" % i), r)
        # PyTorch eager: inputs already on the GPU, outputs left there.
        with torch.no_grad():
            ms, _ = common.wall_median_ms(torch, lambda: model(*inputs.values()), runs, 10)
            host = {k: v.cpu() for k, v in inputs.items()}
            ms_io, _ = common.wall_median_ms(
                torch, lambda: [o.cpu() for o in as_tuple(model(*[v.to(dev) for v in host.values()]))], runs, 5)
        res.add(stage="models", case=key, impl="torch", ms=ms, extra={"runs": runs, "with_copies_ms": ms_io})
        onnx_path = os.path.join(d, "model.onnx")
        if not os.path.exists(onnx_path):
            how, err = export(torch, model, inputs, outs, onnx_path, log, exporter, dt)
            if err and not how:
                res.add(stage="models", case=key, impl="export", error=err)
                del model, inputs
                torch.cuda.empty_cache()
                continue
            res.add(stage="models", case=key, impl="export", extra={"exporter": how, "warning": err,
                                                                   "mb": os.path.getsize(onnx_path) / 1e6})
        del model, inputs
        torch.cuda.empty_cache()
        for target, device in cfg.flagos_targets:
            if dl.over(30):
                res.add(stage="models", case=key, impl="flagos-" + target, error="skipped: stage time limit")
                continue
            flagos_model(cfg, res, key, onnx_path, target, device, in_files, ref, dl, log)
        done.append((name, dt, b, key, d))
    if not cfg.compile:
        return
    # torch.compile last: its compile time is the longest and least predictable.
    tmo = float(os.environ.get("BENCH_COMPILE_TIMEOUT", "300"))
    for name, dt, b, key, d in done:
        if dl.over(60):
            res.add(stage="models", case=key, impl="torch.compile", error="skipped: stage time limit")
            continue
        args = [sys.executable, os.path.abspath(__file__), "compile-one", name, dt, str(b), d]
        rc, out, secs = common.run(args, min(tmo, dl.left() - 10), log)
        line = [l for l in out.splitlines() if l.startswith("COMPILED ")]
        if rc != 0 or not line:
            res.add(stage="models", case=key, impl="torch.compile",
                    error="%s (after %.0f s)" % (common.error_text(out), secs))
            continue
        r = json.loads(line[-1][len("COMPILED "):])
        res.add(stage="models", case=key, impl="torch.compile", ms=r["ms"], extra=r)


def compile_one(name, dtype, batch, d):
    small = os.environ.get("BENCH_SMALL", "0") == "1"
    dev = os.environ.get("BENCH_TORCH_DEVICE", "cuda")
    mode = os.environ.get("BENCH_COMPILE_MODE", "max-autotune")
    runs = int(os.environ.get("BENCH_TORCH_RUNS", "100"))
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    model, inputs, _ = build(torch, name, dtype, batch, dev, small)
    for x in inputs.values():  # as eager: no copy of the inputs into CUDA graphs' buffers per call
        torch._dynamo.mark_static_address(x)
    t0 = time.time()
    cm = torch.compile(model, mode=mode, dynamic=False)
    with torch.no_grad():
        # cloned: a CUDA-graph replay (the timed runs) overwrites the outputs of the first call
        outs = tuple(o.clone() for o in as_tuple(cm(*inputs.values())))
        common.sync(torch)
        ct = time.time() - t0
        ms, _ = common.wall_median_ms(torch, lambda: cm(*inputs.values()), runs, 10)
    check = {}
    for i, o in enumerate(outs):
        check["out%d" % i] = common.err_stats(o.float().cpu().numpy(), np.load(os.path.join(d, "ref%d.npy" % i)))
    print("COMPILED " + json.dumps({"ms": ms, "compile_s": ct, "mode": mode, "runs": runs, "check": check,
                                    "inductor_cache": cache}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "compile-one":
        compile_one(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit("usage: models.py compile-one MODEL DTYPE BATCH DIR")
