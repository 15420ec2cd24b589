#!/usr/bin/python3
"""Realized routing statistics of a moe-score results file written with moe.trace: true
(docs/workloads.md): per MoE layer the fitted Zipf exponent of expert popularity, the experts
active per batch, how many of a batch's active experts the previous batch also used (what a cache
reuses), the share of a batch's rows on its K busiest experts, and (with moe.trace_topk, k >= 2)
how strongly experts fire with one partner.

usage: routing_stats.py SCORES.h5 [--busiest K] [--json]"""
import argparse
import json

import h5py
import numpy as np


def zipf_exponent(totals):
    share = np.sort(totals[totals > 0])[::-1] / totals.sum()
    if len(share) < 2:
        return 0.0
    rank = np.arange(1, len(share) + 1)
    slope = np.polyfit(np.log(rank), np.log(share), 1)[0]
    return float(-slope)


def pair_strength(ids, experts):
    """Mean over experts of the share of their co-selections that go to their most frequent partner."""
    if ids.shape[1] < 2:
        return None
    co = np.zeros((experts, experts))
    for a in range(ids.shape[1]):
        for b in range(ids.shape[1]):
            if a != b:
                np.add.at(co, (ids[:, a], ids[:, b]), 1)
    rows = co.sum(1)
    used = rows > 0
    return float((co.max(1)[used] / rows[used]).mean())


def layer_stats(f, name, done, busiest):
    rows = f[f"trace/{name}/expert_rows"][...][done]
    experts = rows.shape[1]
    active = rows > 0
    reuse = [(active[b] & active[b - 1]).sum() / max(active[b].sum(), 1) for b in range(1, len(rows))]
    top = np.sort(rows, axis=1)[:, ::-1][:, :busiest].sum(1) / np.maximum(rows.sum(1), 1)
    out = {
        "layer": int(name.split("_")[1]),
        "experts": experts,
        "batches": int(len(rows)),
        "zipf_exponent_fit": round(zipf_exponent(rows.sum(0).astype(float)), 3),
        "max_over_mean_load": round(float(rows.sum(0).max() / rows.sum(0).mean()), 3),
        "active_per_batch": round(float(active.sum(1).mean()), 2),
        "reuse_from_previous_batch": round(float(np.mean(reuse)) if reuse else 0.0, 3),
        f"share_on_busiest_{busiest}": round(float(top.mean()), 3),
        f"uniform_share_on_{busiest}": round(busiest / experts, 3),
    }
    if f"trace/{name}/topk_ids" in f:
        ids = f[f"trace/{name}/topk_ids"][...]
        strength = pair_strength(ids, experts)
        if strength is not None:
            out["partner_share"] = round(strength, 3)
            out["uniform_partner_share"] = round(1 / (experts - 1), 3)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scores")
    p.add_argument("--busiest", type=int, default=2, help="K of the busiest-experts share")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    with h5py.File(a.scores, "r") as f:
        if "trace" not in f:
            raise SystemExit(f"{a.scores}: no routing trace (run moe-score with moe.trace: true)")
        done = f["batch_done"][...] != 0
        names = sorted(f["trace"], key=lambda n: int(n.split("_")[1]))
        stats = [layer_stats(f, n, done, a.busiest) for n in names]
    if a.json:
        print(json.dumps(stats, indent=1))
        return
    keys = list(stats[0].keys())
    print("  ".join(keys))
    for s in stats:
        print("  ".join(str(s.get(k, "")) for k in keys))


if __name__ == "__main__":
    main()
