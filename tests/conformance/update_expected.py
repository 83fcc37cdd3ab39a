#!/usr/bin/env python3
"""Rewrites an expected-failures list from a conformance report.

    update_expected.py REPORT.json LIST [--keep-reasons]

Every test that failed in the report is listed, one per line, `name  reason`,
sorted by name. A reason already written in LIST for the same test is kept (so a
reason written by hand survives); otherwise the runner's own message is used.
Tests that now pass disappear from the list. The hook that watches these files
expects them only to shrink: run this after fixing tests, and say in the commit
why a list grew if it ever must.
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    report, path = sys.argv[1], sys.argv[2]
    with open(report) as f:
        rep = json.load(f)
    old = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                name, _, reason = line.partition(" ")
                old[name] = reason.strip()
    except FileNotFoundError:
        pass
    failed = {t["name"]: t.get("reason", "") for t in rep["tests"] if t["result"] != "pass"}
    lines = []
    for name in sorted(failed):
        reason = old.get(name) or " ".join(failed[name].split())[:300]
        lines.append(f"{name}  {reason}")
    header = (f"# Node tests the {rep['target']} target does not pass yet, one per line with the reason.\n"
              "# A test listed here must fail and every other test must pass (flagos conformance\n"
              "# --expected-failures). Regenerate with tests/conformance/update_expected.py.\n")
    with open(path, "w") as f:
        f.write(header)
        for line in lines:
            f.write(line + "\n")
    print(f"{path}: {len(lines)} expected failures ({len(rep['tests']) - len(lines)} of {len(rep['tests'])} pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
