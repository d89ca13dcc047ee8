"""The figure of FIVO warm-started from the IWAE-trained model without
weight decay (experiments/RESULTS.md, "FIVO warm-started from the
IWAE-trained model without weight decay"): Nottingham (cosine from 1e-3
over 50000, the KL warm-up; seeds 1 and 2) and JSB (constant 2e-4, the KL
warm-up; seeds 0, 1 and 2). Validation FIVO at N = 4 and the resampling rate
against updates after the warm start, read from each warm run's
TensorBoard events (the loop's own validation: the run's seed, batch 4),
beside its start, the FIVO-trained run from scratch at its best
validation, and the IWAE controls. The starts' and the controls' values
are the same validation (`seqlvm.run.evaluation.Evaluator` on "valid",
N = 4, the run's seed, batch 4) of their checkpoints; the from-scratch
values are the earlier runs' best validations. Run from the repository
root with the runs in place:

    .venv/bin/python experiments/fivo_warm_figure.py experiments/figures/reproduce_fivo_warm_nodecay_valid.png
"""
import glob
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import tensorflow as tf
out = sys.argv[1]
def scalars(run, tag):
  found = {}
  for f in sorted(glob.glob(run + "/valid/events*")):
    for e in tf.compat.v1.train.summary_iterator(f):
      for v in e.summary.value:
        if v.tag == tag:
          found[e.step] = float(tf.make_ndarray(v.tensor))
  return sorted(found.items())
# Per panel: the warm runs (label, run), the start's validation FIVO and
# resampling rate, the from-scratch run's best validation, and the IWAE
# control's validation FIVO at its checkpoints (updates, value).
W2E5 = "FIVO from IWAE-trained (2e-5)"
PANELS = [
    {"title": "Nottingham, KL warm-up, no decay, seed 1",
     "warm": [(W2E5, "runs/reproduce_long/nottingham/fivo-warm-seed1")],
     "start": (-2.9352, 0.1625), "scratch": -2.930},
    {"title": "Nottingham, KL warm-up, no decay, seed 2",
     "warm": [(W2E5, "runs/reproduce_long/nottingham/fivo-warm-seed2")],
     "start": (-2.8630, 0.1654), "scratch": -2.937,
     "control": [(0, -2.8630), (1500, -2.8618), (2500, -2.8644),
                 (5000, -2.8649), (6500, -2.8643)]},
    {"title": "JSB, KL warm-up, seed 0",
     "warm": [(W2E5, "runs/reproduce_jsbwarm/jsb/fivo-warm"),
              ("FIVO from IWAE-trained (2e-4)",
               "runs/warmstart/jsb/fivo-from-iwae-lr2e-4")],
     "start": (-6.9751, 0.2353), "scratch": -6.966,
     "control": [(0, -6.9751), (1000, -6.9628), (1250, -6.9636),
                 (3000, -6.9638), (6000, -6.9657)]},
    {"title": "JSB, KL warm-up, seed 1",
     "warm": [(W2E5, "runs/reproduce_jsbwarm/jsb/fivo-warm-seed1")],
     "start": (-6.9065, 0.2484), "scratch": -6.920},
    {"title": "JSB, KL warm-up, seed 2",
     "warm": [(W2E5, "runs/reproduce_jsbwarm/jsb/fivo-warm-seed2")],
     "start": (-6.9260, 0.2525), "scratch": -6.888,
     "control": [(0, -6.9260), (250, -6.9134), (1000, -6.9174),
                 (3000, -6.9163), (5000, -6.9196)]},
]
fig, axes = plt.subplots(2, len(PANELS), figsize=(3.6 * len(PANELS), 6.0),
                         sharex="col", gridspec_kw={"height_ratios": [3, 1.3]})
for col, p in enumerate(PANELS):
  ax, bx = axes[0, col], axes[1, col]
  start, start_rs = p["start"]
  for k, (label, run) in enumerate(p["warm"]):
    v = [(0, start)] + scalars(run, "fivo_per_timestep")
    r = [(0, start_rs)] + scalars(run, "smc/resampling_rate")
    ax.plot(*zip(*v), f"C{3 * k}-", lw=1, label=label)
    bx.plot(*zip(*r), f"C{3 * k}-", lw=1)
  if p.get("control"):
    ax.plot(*zip(*p["control"]), "C1s-", ms=4, lw=1,
            label="IWAE from IWAE-trained, 2e-5 (control)")
  ax.axhline(start, color="C1", ls=":", lw=1.4,
             label="IWAE-trained at its best (the start)")
  ax.axhline(p["scratch"], color="C2", ls=":", lw=1.4,
             label="FIVO-trained from scratch at its best (earlier run)")
  bx.axhline(start_rs, color="C1", ls=":", lw=1.4)
  ax.set_title(p["title"], fontsize=10)
  ax.grid(alpha=.3); bx.grid(alpha=.3)
  ax.legend(fontsize=6.5, loc="best", framealpha=0.6)
  bx.set_xlabel("updates after the warm start")
axes[0, 0].set_ylabel("valid FIVO, N = 4 (nats per timestep)")
axes[1, 0].set_ylabel("resampled, N = 4")
fig.tight_layout(); fig.savefig(out, dpi=100)
print("wrote", out)
