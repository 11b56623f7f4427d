"""Plots the learning benchmark's curves (cargo bench --bench replay).

Reads target/replay/*.json and writes target/replay/replay.png: per dataset and
cost_weight, the moving average of quality - cost_weight x cost of the bandit
against the best single model, uniform random and the per-prompt oracle over
the same prompts. Needs matplotlib.
"""

import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "target/replay"
reports = sorted((json.load(open(p)) for p in glob.glob(os.path.join(src, "*.json"))),
                 key=lambda r: (r["dataset"], r["cost_weight"]))
datasets = sorted({r["dataset"] for r in reports})
weights = sorted({r["cost_weight"] for r in reports})
fig, axes = plt.subplots(len(datasets), len(weights), figsize=(5 * len(weights), 3.6 * len(datasets)),
                         squeeze=False)
for r in reports:
    ax = axes[datasets.index(r["dataset"])][weights.index(r["cost_weight"])]
    steps = [p["step"] for p in r["curve"]]
    for key, style in [("oracle", ":"), ("best_single", "--"), ("uniform", "-."), ("bandit", "-")]:
        ax.plot(steps, [p[key] for p in r["curve"]], style, label=key.replace("_", " "))
    ax.set_title(f"{r['dataset']}, cost_weight {r['cost_weight']:g}")
    ax.set_xlabel(f"prompts routed (moving mean over {r['window']})")
    ax.set_ylabel("quality - w x cost")
    ax.grid(alpha=0.3)
axes[0][0].legend(loc="lower right", fontsize=8)
fig.tight_layout()
out = os.path.join(src, "replay.png")
fig.savefig(out, dpi=90)
print("wrote", out)
