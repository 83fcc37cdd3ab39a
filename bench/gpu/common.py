"""What the stages of bench/gpu share: configuration from the environment, the
results file, subprocesses with time limits, and timing helpers (README.md says
what each column times)."""
import json
import os
import statistics
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Config:
    def __init__(self):
        self.flagos = os.environ.get("FLAGOS", os.path.join(REPO, "build-gpu", "flagos"))
        self.work = os.environ.get("BENCH_WORK", "/tmp/flagos-bench")
        self.results = os.environ.get("BENCH_RESULTS", os.path.join(self.work, "results.json"))
        self.logdir = os.environ.get("BENCH_LOGS", os.path.join(self.work, "logs"))
        self.cublaslt = os.environ.get("BENCH_CUBLASLT", os.path.join(self.work, "cublaslt_bench"))
        self.compile = os.environ.get("BENCH_COMPILE", "1") == "1"
        self.compile_mode = os.environ.get("BENCH_COMPILE_MODE", "max-autotune")
        # FlagOS columns: TARGET=DEVICE pairs (flagos compile --target, --device).
        spec = os.environ.get("BENCH_FLAGOS", "cuda=cuda,opencl=opencl:NVIDIA")
        self.flagos_targets = [tuple(p.split("=", 1)) for p in spec.split(",") if "=" in p]
        if os.environ.get("BENCH_OPENCL", "1") != "1":
            self.flagos_targets = [t for t in self.flagos_targets if t[0] != "opencl"]
        self.small = os.environ.get("BENCH_SMALL", "0") == "1"  # tiny sizes: tries the script on a CPU
        self.device = os.environ.get("BENCH_TORCH_DEVICE", "cuda")
        os.makedirs(self.work, exist_ok=True)
        os.makedirs(self.logdir, exist_ok=True)


class Results:
    """One JSON file of records, rewritten after every record so that a stage
    killed at its time limit keeps what it measured."""

    def __init__(self, path):
        self.path = path
        self.data = {"meta": {}, "records": []}
        if os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    def meta(self, **kw):
        self.data["meta"].update(kw)
        self.save()

    def add(self, **rec):
        self.data["records"].append(rec)
        self.save()
        short = {k: v for k, v in rec.items() if k not in ("extra",)}
        print("RESULT", json.dumps(short)[:400], flush=True)

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


class Deadline:
    def __init__(self, seconds):
        self.end = time.time() + seconds

    def left(self):
        return self.end - time.time()

    def over(self, reserve=0.0):
        return self.left() <= reserve


def run(args, timeout, log=None, env=None):
    """Runs a command; returns (rc, output, seconds). rc 124 means the time limit
    ended it. The output (stdout and stderr) also goes to `log`."""
    t0 = time.time()
    timeout = max(1.0, timeout)
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env)
        rc, out = p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, out = 124, (e.stdout or b"").decode("utf-8", "replace") + "\n[timed out after %.0f s]" % timeout
    dt = time.time() - t0
    if log:
        with open(log, "a") as f:
            f.write("$ %s\n%s\n[rc %d, %.1f s]\n" % (" ".join(args), out, rc, dt))
    return rc, out, dt


def error_text(out, limit=300):
    """The lines of a failed command's output that say why."""
    lines = [l for l in out.strip().splitlines() if l.strip()]
    keep = [l for l in lines if "error" in l.lower() or "timed out" in l or "Traceback" in l or "Error" in l]
    text = " | ".join((keep or lines)[-3:])
    # A time limit is the reason whatever else the command printed: say it first
    # (it comes last and would be cut off).
    tmo = [l for l in lines if l.startswith("[timed out after")]
    if tmo:
        rest = " | ".join([l for l in (keep or lines) if l not in tmo][-2:])
        text = tmo[-1].strip("[]") + ("; before that: " + rest if rest else "")
    return text[:limit] if text else "(no output)"


def flagos_profile(cfg, model, device, runs, warmup, timeout, log, inputs=()):
    """`flagos profile --json`: the device time of the model's kernels per run
    (device events around each node, summed; host uploads and downloads are
    timed apart). Returns (dict for the device, None) or (None, error)."""
    js = os.path.join(cfg.work, "profile.json")
    if os.path.exists(js):
        os.remove(js)
    args = [cfg.flagos, "profile", model, "--device", device, "--runs", str(runs), "--warmup", str(warmup),
            "--json", js, "--top", "3"]
    for name, path in inputs:
        args += ["--input", "%s=%s" % (name, path)]
    rc, out, _ = run(args, timeout, log)
    if rc != 0 or not os.path.exists(js):
        return None, error_text(out)
    with open(js) as f:
        d = json.load(f)["devices"][0]
    return d, None


def sync(torch):
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_loop_ms(torch, fn, iters, warmup):
    """Mean device time per call of fn over `iters` back-to-back calls, between
    two CUDA events (after `warmup` calls). Without CUDA (BENCH_SMALL tries on
    a CPU) the wall time."""
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) * 1e3 / iters
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(iters):
        fn()
    e1.record()
    e1.synchronize()
    return e0.elapsed_time(e1) / iters


def wall_median_ms(torch, fn, runs, warmup):
    """Median wall time of fn() followed by torch.cuda.synchronize()."""
    for _ in range(warmup):
        fn()
    sync(torch)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync(torch)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), ts


def err_stats(got, ref):
    """Max absolute error, and that over the largest reference magnitude."""
    import numpy as np
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape:
        return {"error": "shape %s, expected %s" % (list(g.shape), list(r.shape))}
    if g.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0}
    bad = int(np.count_nonzero(~np.isfinite(g)))
    d = np.abs(g - r)
    scale = float(np.max(np.abs(r))) or 1.0
    return {"max_abs": float(np.nanmax(d)), "max_rel": float(np.nanmax(d)) / scale, "nonfinite": bad}
