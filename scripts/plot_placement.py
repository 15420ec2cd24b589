#!/usr/bin/python3
"""Per-rank load before and after load-balanced expert placement.

    scripts/plot_placement.py LOADS.json OUT.png

LOADS.json is what `moe-bench place --loads LOADS.json` writes: for each placement policy the rows
each rank computes over the held-out batches. One group of bars per rank, one bar per policy,
as a share of the mean rank load (1.0 = perfect balance); the legend carries each policy's
max/mean. Uses Debian's matplotlib (python3-matplotlib), hence /usr/bin/python3.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        loads = json.load(f)
    policies = loads["policies"]
    world = loads["world"]
    width = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, p in enumerate(policies):
        rows = p["rank_rows"]
        mean = sum(rows) / len(rows)
        shares = [r / mean if mean > 0 else 0 for r in rows]
        ax.bar([r + (i - (len(policies) - 1) / 2) * width for r in range(world)], shares, width,
               label=f'{p["policy"]} (max/mean {p["max_over_mean"]:.2f}, {p["slots"]} slots/rank)')
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(world))
    ax.set_xlabel("rank")
    ax.set_ylabel("rows computed / mean over ranks")
    ax.set_title("Per-rank expert load on held-out batches\n" + loads["command"], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
