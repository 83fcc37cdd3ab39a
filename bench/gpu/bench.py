"""Runs one stage of the GPU benchmark (scripts/gpu/bench.sh runs each selected
stage in turn): python3 bench.py kernels|matmul|models|meta SECONDS

Records go to $BENCH_RESULTS (JSON, rewritten after every record); report.py
turns one or more such files into the markdown report."""
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def meta(cfg, res):
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "python": platform.python_version(),
            "compile_mode": cfg.compile_mode, "flagos_targets": ["%s=%s" % t for t in cfg.flagos_targets]}
    for mod in ("torch", "torchvision", "transformers", "onnx", "onnxscript", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 - missing modules are reported, not fatal
            info[mod] = "missing (%s)" % type(e).__name__
    try:
        import torch
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["gpu"] = "%s, %d SMs, %.0f GiB" % (p.name, p.multi_processor_count, p.total_memory / 2**30)
            info["cuda"] = torch.version.cuda
    except Exception as e:  # noqa: BLE001
        info["gpu"] = "unknown (%r)" % e
    res.meta(**info)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bench.py kernels|matmul|models|meta SECONDS")
    stage, secs = sys.argv[1], float(sys.argv[2])
    cfg = common.Config()
    res = common.Results(cfg.results)
    dl = common.Deadline(secs)
    t0 = time.time()
    if stage == "meta":
        meta(cfg, res)
    elif stage in ("kernels", "matmul"):
        import kernels
        (kernels.stage_kernels if stage == "kernels" else kernels.stage_matmul)(cfg, res, dl)
    elif stage == "models":
        import models
        models.stage_models(cfg, res, dl)
    else:
        sys.exit("unknown stage " + stage)
    res.meta(**{"stage_%s_s" % stage: round(time.time() - t0, 1)})


if __name__ == "__main__":
    main()
