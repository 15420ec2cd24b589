#!/usr/bin/python3
"""Plots of a scaling study from a folder of moe-score JSON run reports.

    scripts/plot_scaling.py REPORTS_DIR [PLOTS_DIR]      (PLOTS_DIR defaults to REPORTS_DIR/plots)

Reports under a folder named `weak` count as weak scaling (work per rank fixed), all others as
strong scaling (the same input for every world size); jobs/scaling.sbatch lays them out so.
Writes:
  scaling.png         tokens/s against ranks, strong and weak, one line per (all-to-all, gating),
                      with ideal linear scaling from the smallest world size
  phases.png          time per phase (max over ranks) as stacked bars, one bar per world size
  load_imbalance.png  max/mean tokens per expert for each MoE layer, per world size and gating
Uses Debian's matplotlib (python3-matplotlib), hence /usr/bin/python3.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a compute node
import matplotlib.pyplot as plt  # noqa: E402

# Phases of the batch loop in pipeline order (lib/runtime/report.cpp); start-up phases are left out.
LOOP_PHASES = ["read", "embed", "norm", "attention.qkv", "attention.core", "attention.out", "dense_mlp",
               "moe.router", "moe.dispatch", "moe.experts", "moe.combine", "moe.shared", "lm_head", "write"]


def load_reports(folder):
    runs = []
    for path in sorted(Path(folder).rglob("*.json")):
        with open(path) as f:
            report = json.load(f)
        if "layout" not in report or "throughput" not in report:
            continue  # not a moe-score run report
        layout = report["layout"]
        runs.append({
            "mode": "weak" if "weak" in path.parent.parts[-1:] else "strong",
            "world": layout["world"],
            "tp": layout["tp"],
            "variant": f"{layout['alltoall']}, {layout['gating']}" + (f", tp {layout['tp']}" if layout["tp"] > 1 else ""),
            "tokens_per_second": report["throughput"]["tokens_per_second"],
            "phases": report.get("phase_seconds_max_over_ranks", {}),
            "imbalance": [layer["load_imbalance_max_over_mean"] for layer in report.get("moe_layers", [])],
            "gating": layout["gating"],
            "alltoall": layout["alltoall"],
        })
    return runs


def plot_scaling(runs, out):
    modes = [m for m in ("strong", "weak") if any(r["mode"] == m for r in runs)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        lines = defaultdict(list)
        for r in runs:
            if r["mode"] == mode:
                lines[r["variant"]].append((r["world"], r["tokens_per_second"]))
        for variant, points in sorted(lines.items()):
            points.sort()
            worlds, rates = zip(*points)
            ax.plot(worlds, rates, marker="o", label=variant)
        first = min(min(p) for p in lines.values())
        worlds = sorted({w for p in lines.values() for w, _ in p})
        ax.plot(worlds, [first[1] * w / first[0] for w in worlds], "k--", linewidth=1, label="ideal (linear)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(worlds, [str(w) for w in worlds])
        ax.set_xlabel("MPI ranks")
        ax.set_ylabel("tokens/s")
        title = "strong scaling (same input)" if mode == "strong" else "weak scaling (same work per rank)"
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def default_variant(runs):
    """The variant most world sizes were run with (the first of the sweep's lists)."""
    counts = defaultdict(int)
    for r in runs:
        counts[r["variant"]] += 1
    return max(sorted(counts), key=lambda v: counts[v])


def plot_phases(runs, out):
    strong = [r for r in runs if r["mode"] == "strong"] or runs
    variant = default_variant(strong)
    chosen = sorted((r for r in strong if r["variant"] == variant), key=lambda r: r["world"])
    phases = [p for p in LOOP_PHASES if any(r["phases"].get(p, 0) > 0 for r in chosen)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [str(r["world"]) for r in chosen]
    bottom = [0.0] * len(chosen)
    colors = plt.get_cmap("tab20").colors
    for i, phase in enumerate(phases):
        heights = [r["phases"].get(phase, 0.0) for r in chosen]
        ax.bar(labels, heights, bottom=bottom, label=phase, color=colors[i % len(colors)])
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("seconds (max over ranks)")
    ax.set_title(f"time per phase, strong scaling ({variant})")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_imbalance(runs, out):
    strong = [r for r in runs if r["mode"] == "strong" and r["imbalance"]] or [r for r in runs if r["imbalance"]]
    series = {}
    for r in sorted(strong, key=lambda r: (r["gating"], r["world"])):
        series.setdefault(f"{r['world']} ranks, {r['gating']}", r["imbalance"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if series:
        num_layers = max(len(v) for v in series.values())
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series.items()):
            ax.bar([layer + i * width for layer in range(len(values))], values, width=width, label=label)
        ax.set_xticks([layer + 0.4 - width / 2 for layer in range(num_layers)], [str(layer) for layer in range(num_layers)])
        ax.axhline(1.0, color="k", linewidth=1, linestyle="--")
        ax.set_ylim(0, 1.35 * max(max(v) for v in series.values()))  # room for the legend above the bars
        ax.legend(fontsize=7, ncol=4, loc="upper center")
    ax.set_xlabel("MoE layer")
    ax.set_ylabel("max / mean tokens per expert")
    ax.set_title("load imbalance per layer (1 = perfectly balanced)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    reports = Path(sys.argv[1])
    plots = Path(sys.argv[2]) if len(sys.argv) == 3 else reports / "plots"
    runs = load_reports(reports)
    if not runs:
        sys.exit(f"plot_scaling: no moe-score run reports (*.json) under {reports}")
    plots.mkdir(parents=True, exist_ok=True)
    plot_scaling(runs, plots / "scaling.png")
    plot_phases(runs, plots / "phases.png")
    plot_imbalance(runs, plots / "load_imbalance.png")
    print(f"plot_scaling: {len(runs)} run reports -> {plots}/scaling.png, phases.png, load_imbalance.png")


if __name__ == "__main__":
    main()
