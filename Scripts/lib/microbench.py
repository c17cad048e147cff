#!/usr/bin/env python3
"""The package-benchmark suite's results as bench.sh's table: each "NAME: ours" next to its "NAME: reference ..."
from the same run, by their medians per operation, with the ratio ours / reference (lower is better).

    microbench.py DIR [--json FILE]

DIR holds `swift package benchmark --format histogramPercentiles --path DIR` output: one TSV per benchmark and
metric, percentiles 0-100 by row.
"""
import glob
import json
import os
import re
import sys


def median(path):
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == "50":
                return float(fields[1])
    raise SystemExit(f"microbench: no median in {path}")


def main():
    args = sys.argv[1:]
    if not args:
        raise SystemExit("usage: microbench.py DIR [--json FILE]")
    directory, out = args[0], None
    if len(args) == 3 and args[1] == "--json":
        out = args[2]
    # Current_run.TARGET.NAME.METRIC.histogram.percentiles.tsv; NAME has its spaces as underscores.
    pattern = re.compile(r"^Current_run\.[^.]+\.(.+)\.(wallClock|mallocCountTotal)\.histogram\.percentiles\.tsv$")
    results = {}
    for path in glob.glob(os.path.join(directory, "*.tsv")):
        match = pattern.match(os.path.basename(path))
        if match:
            name = match.group(1).replace("_", " ")
            results.setdefault(name, {})[match.group(2)] = median(path)
    if not results:
        raise SystemExit(f"microbench: no results in {directory}")
    figures = []
    ours = sorted(n for n in results if n.endswith(": ours") or ": " not in n)
    for name in ours:
        base = name[: -len(": ours")] if name.endswith(": ours") else name
        reference = next((n for n in results if n.startswith(base + ": reference")), None)
        mine = results[name]
        theirs = results.get(reference, {})
        label = reference[len(base) + len(": reference ") :] if reference else "-"
        for metric, unit in (("wallClock", "ns/op"), ("mallocCountTotal", "mallocs/op")):
            value = mine.get(metric)
            if value is None:
                continue
            ref = theirs.get(metric, 0.0)
            figures.append({
                "figure": f"{base} ({unit})", "value": value, "unit": unit, "reference": label,
                "reference_value": ref, "ratio": round(value / ref, 3) if ref else 0.0, "target": "-",
                "pass": None,
            })
    print(f"{'figure':<72}{'ours':>10}  {'reference':<44}{'ref.':>10}{'ratio':>8}")
    for f in figures:
        ratio = f"{f['ratio']:.2f}" if f["ratio"] else "-"
        print(f"{f['figure']:<72}{f['value']:>10.0f}  {f['reference'][:44]:<44}{f['reference_value']:>10.0f}{ratio:>8}")
    if out:
        with open(out, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
