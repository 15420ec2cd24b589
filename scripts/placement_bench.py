#!/usr/bin/python3
"""Side-by-side table and per-rank plot of moe-score runs under several expert placements.

    scripts/placement_bench.py [--png OUT.png] [--command TEXT] POLICY=REPORT.json ...

Each argument is a run report (moe-score `report:`) tagged with its placement policy; a policy may
appear several times (rounds of the same run), and its times are then medians. Per policy: tokens/s
(and the ratio to the first policy's), the slowest rank's moe.experts seconds
(`phase_seconds_max_over_ranks`), and the realized rows each rank's experts computed
(`rows_computed_per_rank`, all MoE layers together) as max/mean, with the worst layer's max/mean.
The PNG has one group of bars per rank: rows computed and moe.experts seconds, one bar per policy.
Written by scripts/bench_placement.sh; uses Debian's matplotlib, hence /usr/bin/python3.
"""
import argparse
import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402


def load(runs):
    policies = {}
    for arg in runs:
        policy, sep, path = arg.partition("=")
        if not sep:
            sys.exit(f"placement_bench.py: expected POLICY=REPORT.json, got '{arg}'")
        with open(path) as f:
            policies.setdefault(policy, []).append(json.load(f))
    return policies


def summary(reports):
    layers = reports[0]["moe_layers"]
    world = len(layers[0]["rows_computed_per_rank"])
    rows = [sum(layer["rows_computed_per_rank"][r] for layer in layers) for r in range(world)]
    seconds = [statistics.median(rep["moe_experts_seconds_per_rank"][r] for rep in reports) for r in range(world)]
    return {
        "tokens_per_second": statistics.median(rep["throughput"]["tokens_per_second"] for rep in reports),
        "experts_max": statistics.median(rep["phase_seconds_max_over_ranks"].get("moe.experts", 0.0)
                                         for rep in reports),
        "rows": rows,
        "rows_max_over_mean": max(rows) / (sum(rows) / world),
        "worst_layer": max(layer["rows_computed_max_over_mean"] for layer in layers),
        "seconds": seconds,
        "rounds": len(reports),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--png")
    ap.add_argument("--command", default="")
    ap.add_argument("--title", default="realized load per rank")
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    stats = {p: summary(reports) for p, reports in load(args.runs).items()}
    first = next(iter(stats.values()))
    if args.command:
        print(f"# {args.command}")
    print(f"{'policy':>12} {'rounds':>6} | {'tokens/s':>9} {'speed-up':>8} | {'slowest rank':>12} "
          f"{'vs first':>8} | {'rows max/mean':>13} {'worst layer':>11}")
    print(f"{'':>12} {'':>6} | {'':>9} {'':>8} | {'experts (s)':>12} {'':>8} | {'all layers':>13} {'':>11}")
    perf = "PERFORMANCE placement"
    for policy, s in stats.items():
        print(f"{policy:>12} {s['rounds']:>6} | {s['tokens_per_second']:9.0f} "
              f"{s['tokens_per_second'] / first['tokens_per_second']:8.2f} | {s['experts_max']:12.3f} "
              f"{s['experts_max'] / first['experts_max']:8.2f} | {s['rows_max_over_mean']:13.3f} "
              f"{s['worst_layer']:11.3f}")
        perf += f" {policy}_tokens_per_second={s['tokens_per_second']:.0f}"
    print(perf)
    if args.png:
        plot(stats, args.png, args.title)
        print(f"-> {args.png}")


def plot(stats, path, title):
    world = len(first_rows := next(iter(stats.values()))["rows"])
    width = 0.8 / len(stats)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for i, (policy, s) in enumerate(stats.items()):
        x = [r - 0.4 + width * (i + 0.5) for r in range(world)]
        top.bar(x, s["rows"], width, label=f"{policy} (max/mean {s['rows_max_over_mean']:.2f})")
        bottom.bar(x, s["seconds"], width, label=f"{policy} (slowest {s['experts_max']:.2f} s)")
    mean = sum(first_rows) / world
    top.axhline(mean, color="gray", linestyle="--", linewidth=1)
    top.set_ylabel("rows computed\n(all MoE layers)")
    top.set_title(title)
    top.legend(fontsize=8)
    bottom.set_ylabel("moe.experts seconds")
    bottom.set_xlabel("rank")
    bottom.set_xticks(range(world))
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
