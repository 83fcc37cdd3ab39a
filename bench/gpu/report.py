"""Writes the markdown report of the GPU benchmark (bench/gpu/README.md explains
how to read it) from one or more results files of bench.py, and the
`flagos bench` suite's bench.json.

usage: report.py [--suite bench.json] [--log summary.txt] -o report.md results.json...
Later results files win where two hold the same stage, case and column."""
import argparse
import json
import os


def load(paths):
    meta, recs = {}, {}
    order = []
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p) as f:
            d = json.load(f)
        meta.update(d.get("meta", {}))
        for r in d.get("records", []):
            k = (r["stage"], r["case"], r["impl"])
            if k not in recs:
                order.append(k)
            recs[k] = r
    return meta, recs, order


def fmt(x, nd=2):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    return ("%." + str(nd) + "f") % x


def pct(a, b):
    return "%.0f%%" % (100 * a / b) if a and b else "—"


def cell_err(r):
    return "FAIL" if "skipped" not in r["error"] else "skipped"


class Tables:
    def __init__(self, meta, recs, order):
        self.meta, self.recs, self.order = meta, recs, order
        self.notes = []

    def get(self, stage, case, impl):
        return self.recs.get((stage, case, impl))

    def cases(self, stage):
        seen = []
        for s, c, _ in self.order:
            if s == stage and c not in seen:
                seen.append(c)
        return seen

    def ms(self, stage, case, impl):
        r = self.get(stage, case, impl)
        return r.get("ms") if r and "error" not in r else None

    def rate_cell(self, stage, case, impl, unit):
        """GB/s or TFLOP/s of one column, or why there is none."""
        r = self.get(stage, case, impl)
        if r is None:
            return "—", None
        if "error" in r:
            self.notes.append("%s %s %s: %s" % (stage, case, impl, r["error"]))
            return cell_err(r), None
        work = r.get("bytes") or r.get("flops")
        v = work / (r["ms"] / 1e3) / unit if work and r.get("ms") else None
        return fmt(v), v

    def ratio(self, a, b):
        return fmt(a / b) + "×" if a and b else "—"

    def kernels(self):
        cases = [c for c in self.cases("kernels") if c != "copy"]
        if not cases:
            return []
        copy = self.get("kernels", "copy", "torch")
        roof = copy["bytes"] / (copy["ms"] / 1e3) / 1e9 if copy and "error" not in copy else None
        out = ["## Kernels (GB/s; bytes = inputs read + output written once)", "",
               "Device-to-device copy in the same run: **%s GB/s** (torch `copy_`, read + write)." % fmt(roof), "",
               "| case | shape | GB moved | PyTorch eager | torch.compile | FlagOS cuda | FlagOS OpenCL | "
               "cuda % of copy | cuda time / eager | cuda time / compile | OpenCL time / cuda |",
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in cases:
            t = self.get("kernels", c, "torch") or {}
            desc = (t.get("extra") or {}).get("desc", "")
            nbytes = t.get("bytes") or (self.get("kernels", c, "flagos-cuda") or {}).get("bytes")
            cells = [self.rate_cell("kernels", c, i, 1e9) for i in ("torch", "torch.compile", "flagos-cuda",
                                                                     "flagos-opencl")]
            cu = cells[2][1]
            m = {i: self.ms("kernels", c, i) for i in ("torch", "torch.compile", "flagos-cuda", "flagos-opencl")}
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                c, desc, fmt(nbytes / 1e9 if nbytes else None), cells[0][0], cells[1][0], cells[2][0], cells[3][0],
                pct(cu, roof), self.ratio(m["flagos-cuda"], m["torch"]),
                self.ratio(m["flagos-cuda"], m["torch.compile"]), self.ratio(m["flagos-opencl"], m["flagos-cuda"])))
        out += ["", "FlagOS: `flagos profile --json`, kernel device time per run (mean of the profiled runs); "
                "PyTorch: CUDA events around 20 back-to-back calls after 3 warm-ups (mean).", ""]
        return out

    def matmul(self):
        cases = self.cases("matmul")
        if not cases:
            return []
        out = ["## MatMul (TFLOP/s, 2·n³ per product)", "",
               "| case | cuBLASLt (best of heuristic's) | cuBLASLt (heuristic's first) | torch.matmul | torch.compile | "
               "FlagOS cuda | FlagOS OpenCL | cuda % of cuBLASLt | cuda % of torch |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in cases:
            cells = [self.rate_cell("matmul", c, i, 1e12) for i in ("cublaslt", "cublaslt-heuristic", "torch",
                                                                     "torch.compile", "flagos-cuda", "flagos-opencl")]
            lt, tor, cu = cells[0][1], cells[2][1], cells[4][1]
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                c, *[x[0] for x in cells], pct(cu, lt), pct(cu, tor)))
        out += ["", "cuBLASLt: bench/gpu/cublaslt_bench.c, CUDA events around 20 calls after 5 warm-ups; "
                "FlagOS: kernel device time from `flagos profile`.", ""]
        return out

    def models_cpu(self, cases):
        """FlagOS's cpu backend next to the OpenCL device (PoCL on a CPU: BENCH_FLAGOS=cpu=cpu,opencl=opencl)."""
        rows = []
        for c in cases:
            r = self.get("models", c, "flagos-cpu")
            if not r or "error" in r:
                continue
            o = self.get("models", c, "flagos-opencl")
            oms = o["ms"] if o and "error" not in o else None
            rows.append("| %s | %s | %s | %s |" % (c, fmt(r["ms"], 3), fmt(oms, 3) if oms else "—",
                                                   self.ratio(oms, r["ms"])))
        if not rows:
            return []
        return ["", "FlagOS cpu backend next to FlagOS OpenCL on the same machine (ms):", "",
                "| model | FlagOS cpu | FlagOS OpenCL | OpenCL / cpu |", "|---|---:|---:|---:|"] + rows

    def models(self):
        cases = self.cases("models")
        if not cases:
            return []
        out = ["## Models (median latency, ms)", "",
               "| model | exporter | PyTorch eager | eager + copies | torch.compile | FlagOS cuda | FlagOS OpenCL | "
               "cuda / eager | cuda / (eager + copies) | cuda / compile | OpenCL / cuda (goal ≤ 1.3) | max abs err cuda | "
               "max rel err cuda | max rel err OpenCL |",
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        cpu = self.models_cpu(cases)
        for c in cases:
            t = self.get("models", c, "torch")
            ex = self.get("models", c, "export")
            exporter = (ex.get("extra") or {}).get("exporter") if ex and "error" not in ex else (
                "FAIL" if ex else "—")
            if ex and "error" in ex:
                self.notes.append("models %s export: %s" % (c, ex["error"]))
            cols = {}
            for impl in ("torch", "torch.compile", "flagos-cuda", "flagos-opencl"):
                r = self.get("models", c, impl)
                if r is None:
                    cols[impl] = ("—", None)
                elif "error" in r:
                    self.notes.append("models %s %s: %s" % (c, impl, r["error"]))
                    cols[impl] = (cell_err(r), None)
                else:
                    runs = (r.get("extra") or {}).get("runs")
                    mark = "" if not runs or runs >= 50 else " (%d runs)" % runs
                    cols[impl] = (fmt(r["ms"], 3) + mark, r["ms"])
            io = (t.get("extra") or {}).get("with_copies_ms") if t and "error" not in t else None

            def errcol(impl, key):
                r = self.get("models", c, impl)
                chk = (r or {}).get("extra", {}).get("check") if r else None
                if not chk:
                    return "—"
                vals = [v.get(key) for v in chk.values() if isinstance(v, dict)]
                if any(v is None for v in vals):
                    return "; ".join(str(v.get("error")) for v in chk.values() if v.get("error"))
                return "%.2g" % max(vals)
            all_r = self.get("models", c, "all")
            if all_r:
                self.notes.append("models %s: %s" % (c, all_r["error"]))
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                c, exporter or "—", cols["torch"][0], fmt(io, 3), cols["torch.compile"][0], cols["flagos-cuda"][0],
                cols["flagos-opencl"][0], self.ratio(cols["flagos-cuda"][1], cols["torch"][1]),
                self.ratio(cols["flagos-cuda"][1], io),
                self.ratio(cols["flagos-cuda"][1], cols["torch.compile"][1]),
                self.ratio(cols["flagos-opencl"][1], cols["flagos-cuda"][1]), errcol("flagos-cuda", "max_abs"),
                errcol("flagos-cuda", "max_rel"), errcol("flagos-opencl", "max_rel")))
        out += cpu
        comp = [(c, (self.get("models", c, "torch.compile") or {}).get("extra", {})) for c in cases]
        comp = ["%s %.0f s" % (c, e["compile_s"]) for c, e in comp if e and e.get("compile_s")]
        out += ["", "FlagOS's figure is `flagos run`'s: the inputs uploaded from and the outputs read back to the host "
                "each run; PyTorch eager's is with the inputs already on the GPU and the outputs left there, "
                "\"eager + copies\" moves them as FlagOS does.",
                "", "Errors are against PyTorch eager's outputs in the same dtype: max |FlagOS − PyTorch|, and "
                "that over max |PyTorch| (max rel). torch.compile compile times: %s." % (", ".join(comp) or "none"),
                ""]
        return out


def suite(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        d = json.load(f)
    res = d.get("results", [])
    targets, cases, by = [], [], {}
    for r in res:
        if r["target"] not in targets:
            targets.append(r["target"])
        if r["case"] not in cases:
            cases.append(r["case"])
        by[(r["case"], r["target"])] = r
    hdr = ["case"] + ["%s ms" % t for t in targets] + ["%s EAF GFLOP/s" % t for t in targets] + \
          ["%s EAF/W GFLOP/s/W" % t for t in targets]
    out = ["## `flagos bench` default suite, side by side (issue 7)", "",
           "| " + " | ".join(hdr) + " |", "|---|" + "---:|" * (len(hdr) - 1)]
    for c in cases:
        row = [c]
        for key, scale in (("median_ms", 1), ("eaf_flops_per_s", 1e9), ("eaf_per_w", 1e9)):
            for t in targets:
                r = by.get((c, t))
                if not r or r.get(key) is None:
                    row.append("—" if not r or "error" not in r else "FAIL")
                elif key == "eaf_per_w" and not r.get("power_w"):
                    row.append("n/a")
                else:
                    v = r[key] / scale
                    mark = " (est.)" if key == "eaf_per_w" and r.get("power_estimated") else ""
                    row.append(("%.4g" % v) + mark)
        out.append("| " + " | ".join(row) + " |")
    devs, power = {}, {}
    for r in res:
        devs.setdefault(r["target"], r.get("device_name"))
        power.setdefault(r["target"], set()).add((r.get("power_source") or "none").split(" (")[0])
    devs = ["%s: %s (power: %s)" % (t, devs[t], ", ".join(sorted(power[t]))) for t in targets]
    out += ["", "Devices: " + "; ".join(devs) + ".", ""]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--suite")
    ap.add_argument("--log")
    a = ap.parse_args()
    meta, recs, order = load(a.results)
    t = Tables(meta, recs, order)
    lines = ["# FlagOS GPU benchmark", "",
             "How to read this: bench/gpu/README.md. Ratios of times are FlagOS ÷ reference: below 1× FlagOS is "
             "faster, above 1× slower.", ""]
    keys = ("gpu", "cuda", "date", "torch", "torchvision", "transformers", "onnx", "onnxscript", "compile_mode")
    lines.append("Run: " + "; ".join("%s %s" % (k, meta[k]) for k in keys if k in meta) + ".")
    lines.append("")
    for part in (t.kernels(), t.matmul(), t.models(), suite(a.suite)):
        lines += part
    if t.notes:
        lines += ["## Failures and skipped columns", ""] + ["- " + n.replace("|", "/") for n in t.notes] + [""]
    if a.log and os.path.exists(a.log):
        with open(a.log) as f:
            lines += ["## Run log", "", "```", f.read().rstrip(), "```", ""]
    with open(a.output, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
