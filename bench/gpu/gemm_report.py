#!/usr/bin/env python3
"""Markdown tables from flagos_gemm_bench's JSON lines (scripts/gpu/gemm.sh):
per dtype, one row a product, µs a call for cuBLASLt (the cuda plugin), the
opencl rule's choice and every other opencl column, then the rule's time over
cuBLASLt's and the best opencl column's. A time marked * was not gated (the
host's queuing outlasted the gate: it may be the host's pace, not the
device's). Errors above the bench's tolerance were reported by the bench
itself.

usage: gemm_report.py GEMM.jsonl"""
import json
import sys


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) == 2 else 2
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    for dt in sorted({r["dtype"] for r in rows}):
        sub = [r for r in rows if r["dtype"] == dt]
        labels = []
        for r in sub:
            if r["label"] not in labels:
                labels.append(r["label"])
        ocl = [l for l in labels if l != "cuBLASLt"]
        shapes = []
        for r in sub:
            if r["shape"] not in shapes:
                shapes.append(r["shape"])
        t = {(r["shape"], r["label"]): r for r in sub}
        print(f"\n### {dt} (µs a call; TFLOP/s of cuBLASLt and the rule in brackets)\n")
        print("| product | " + " | ".join(labels) + " | rule / cuBLASLt | best opencl | best / cuBLASLt |")
        print("|---|" + "---:|" * (len(labels) + 3))
        for s in shapes:
            cells = []
            for l in labels:
                r = t.get((s, l))
                if not r:
                    cells.append("—")
                else:
                    mark = "*" if r.get("gated") is False else ""
                    extra = f" ({r['tflops']:.1f})" if l in ("cuBLASLt", "rule") else ""
                    cells.append(f"{r['us']:.1f}{mark}{extra}")
            cu, rule = t.get((s, "cuBLASLt")), t.get((s, "rule"))
            best = min((t[(s, l)] for l in ocl if (s, l) in t), key=lambda r: r["us"], default=None)
            ratio = f"{rule['us'] / cu['us']:.2f}×" if cu and rule else "—"
            bratio = f"{best['us'] / cu['us']:.2f}×" if cu and best else "—"
            print(f"| {s} | " + " | ".join(cells) + f" | {ratio} | {best['label'] if best else '—'} | {bratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
