#!/usr/bin/python3
"""Plots `moe-bench cache --csv` output: miss rate against cache size, one line per eviction
policy (Belady's MIN is the optimum the others are compared with).

usage: plot_cache.py CACHE.csv OUT.png [--title TEXT]"""
import argparse
import csv
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv")
    p.add_argument("png")
    p.add_argument("--title", default="expert cache: miss rate by eviction policy")
    a = p.parse_args()
    series = defaultdict(list)
    with open(a.csv) as f:
        for row in csv.DictReader(f):
            series[row["policy"]].append((100 * float(row["share"]), float(row["miss_rate"])))
    if not series:
        raise SystemExit(f"{a.csv}: no rows")
    style = {"belady": dict(color="black", linestyle="--", marker="s"), "lifo": dict(color="tab:blue", marker="o"),
             "lru": dict(color="tab:orange", marker="^")}
    fig, ax = plt.subplots(figsize=(6, 4))
    for policy, points in series.items():
        points.sort()
        ax.plot([x for x, _ in points], [y for _, y in points], label=policy, **style.get(policy, {}))
    ax.set_xlabel("cache size (% of a layer's experts per rank)")
    ax.set_ylabel("miss rate (misses / expert requests)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(a.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(a.png, dpi=120)
    print(f"plot_cache: {a.png}")


if __name__ == "__main__":
    main()
