"""`seqlvm compare`: runs x bounds x particle counts, as a table and a figure.

    compare(["runs/elbo", "runs/iwae", "runs/fivo"], num_particles=[1, 4, 16])

Each run is loaded once (`evaluation.RunEvaluation`, by default at its best
validation checkpoint) and evaluated with every bound at every N; records
already stored for that checkpoint are reused, so a second call, or one with
one more N, computes only what is missing. The result is written to OUT_DIR:

    table.md    runs x bounds as rows, N as columns: nats per timestep with
                standard errors over sequences; the best run of each bound
                and N in bold
    table.csv   one row per (run, bound, N) with every statistic
    bounds.png  one panel per run: ELBO, IWAE and FIVO against N (log axis)
                with standard-error bars, as in the FIVO paper's figures

Runs are labelled by the settings in which their configs differ (e.g.
"bound=iwae" for runs that differ only in the training bound), or by their
folder's name when nothing or too much differs.

Recommended import: `from seqlvm.run import compare`.
"""

import csv
import io
import math
import os

from seqlvm import fileio
from seqlvm import progress as progress_lib
from seqlvm import registry
from seqlvm.run import evaluation
from seqlvm.run import factory

__all__ = ["compare", "run_labels", "markdown_table", "text_table",
           "write_figure", "LABEL_IGNORED", "FIGURE_DPI"]

# Settings that do not make a run different (bookkeeping) for its label;
# init_from is a long path, and a warm start's other settings name it.
LABEL_IGNORED = ("checkpoint_every", "summary_every", "keep_checkpoints",
                 "keep_every", "on_nonfinite", "jit_compile",
                 "valid_variance_sweeps", "valid_samples", "init_from")
# A label names at most this many differing settings.
_MAX_LABEL_SETTINGS = 3
FIGURE_DPI = 100
# Inches per panel of bounds.png.
PANEL_SIZE = (4.5, 3.6)

_CSV_FIELDS = ("run", "label", "checkpoint", "step", "split", "bound",
               "num_particles", "seeds", "ll_per_t", "ll_per_t_se",
               "ll_per_seq", "ll_per_seq_se", "spread",
               "log_p_hat_variance", "ess_mean_fraction", "ess_min_fraction",
               "resampling_rate", "num_sequences", "num_timesteps")


def run_labels(run_dirs, configs=None):
  """A short label per run: the settings its config differs in from the
  others ("bound=fivo"), or, without configs, the folder's name; a name
  two runs would share gets the run's path."""
  names = [os.path.basename(os.path.normpath(d)) or d for d in run_dirs]
  labels = names
  if configs and len(configs) > 1:
    values = [c.to_dict() for c in configs]
    differing = [k for k in values[0] if k not in LABEL_IGNORED and
                 len({repr(v[k]) for v in values}) > 1]
    if differing and len(differing) <= _MAX_LABEL_SETTINGS:
      labels = [", ".join(f"{k}={v[k]}" for k in differing) for v in values]
  if len(set(labels)) < len(labels):  # Two runs would share a label.
    labels = [f"{label} ({os.path.normpath(d)})"
              for label, d in zip(labels, run_dirs)]
  if len(set(labels)) < len(labels):  # The same folder twice.
    labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
  return labels


def _cell(row, digits=3):
  value, se = row["ll_per_t"], row["ll_per_t_se"]
  if se == se:
    return f"{value:.{digits}f} ± {se:.{digits}f}"
  return f"{value:.{digits}f}"


def _best_rows(rows):
  """The (label, bound, N) of the best mean per (bound, N)."""
  best = {}
  for row in rows:
    key = (row["bound"], row["num_particles"])
    if key not in best or row["ll_per_t"] > best[key]["ll_per_t"]:
      best[key] = row
  return {(r["label"], r["bound"], r["num_particles"]) for r in best.values()}


def _grid(rows):
  labels = list(dict.fromkeys(r["label"] for r in rows))
  bounds = list(dict.fromkeys(r["bound"] for r in rows))
  particles = sorted({r["num_particles"] for r in rows})
  by_key = {(r["label"], r["bound"], r["num_particles"]): r for r in rows}
  return labels, bounds, particles, by_key


def markdown_table(rows, split):
  """The table as markdown: the best of each bound and N in bold."""
  labels, bounds, particles, by_key = _grid(rows)
  best = _best_rows(rows) if len(labels) > 1 else set()
  lines = ["| run | step | bound | " + " | ".join(
      f"N = {n}" for n in particles) + " |",
           "|---|---|---|" + "---|" * len(particles)]
  for label in labels:
    for bound in bounds:
      cells = []
      for n in particles:
        row = by_key.get((label, bound, n))
        text = _cell(row) if row else ""
        cells.append(f"**{text}**" if (label, bound, n) in best else text)
      step = next(r["step"] for r in rows if r["label"] == label)
      lines.append(f"| {label} | {step} | {bound} | " + " | ".join(cells) +
                   " |")
  lines.append("")
  lines.append(f"Nats per timestep on the {split} split (higher is "
               "better), ± one standard error over sequences" +
               ("; the best run of each bound and N in bold." if best
                else "."))
  return "\n".join(lines) + "\n"


def text_table(rows):
  """The table as plain text for a terminal (the best marked with *)."""
  labels, bounds, particles, by_key = _grid(rows)
  best = _best_rows(rows) if len(labels) > 1 else set()
  width = max(len(label) for label in labels)
  head = (f"{'run':<{width}}  {'bound':<5}" +
          "".join(f"{'N = ' + str(n):>22}" for n in particles))
  lines = [head]
  for label in labels:
    for bound in bounds:
      cells = []
      for n in particles:
        row = by_key.get((label, bound, n))
        mark = "*" if (label, bound, n) in best else " "
        cells.append(f"{(_cell(row) if row else '') + mark:>22}")
      lines.append(f"{label:<{width}}  {bound:<5}" + "".join(cells))
  lines.append("nats per timestep ± standard error" +
               (" (* best of each bound and N)" if best else ""))
  return "\n".join(lines)


def _csv_text(rows):
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=_CSV_FIELDS, extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({**row, "seeds": " ".join(map(str, row["seeds"]))})
  return out.getvalue()


def write_figure(rows, path, split):
  """bounds.png: a panel per run, each bound against N with error bars.

  The figure is PANEL_SIZE inches per panel at FIGURE_DPI, three panels a
  row; the panels share their y axis so runs can be compared.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels, bounds, particles, by_key = _grid(rows)
  columns = min(len(labels), 3)
  lines = math.ceil(len(labels) / columns)
  fig, axes = plt.subplots(lines, columns, squeeze=False, sharey=True,
                           figsize=(PANEL_SIZE[0] * columns,
                                    PANEL_SIZE[1] * lines))
  markers = dict(zip(registry.BOUNDS.names, "osD"))
  for i, ax in enumerate(axes.flat):
    if i >= len(labels):
      ax.set_visible(False)
      continue
    for j, bound in enumerate(bounds):
      found = [by_key[(labels[i], bound, n)] for n in particles
               if (labels[i], bound, n) in by_key]
      # Side by side around each N, so that the error bars do not hide
      # each other.
      dodge = 2. ** (0.06 * (j - (len(bounds) - 1) / 2))
      ax.errorbar([r["num_particles"] * dodge for r in found],
                  [r["ll_per_t"] for r in found],
                  yerr=[0. if r["ll_per_t_se"] != r["ll_per_t_se"]
                        else r["ll_per_t_se"] for r in found],
                  marker=markers.get(bound, "o"), capsize=3, label=bound)
    ax.set_xscale("log", base=2)
    ax.set_xticks(particles)
    ax.set_xticklabels([str(n) for n in particles])
    ax.set_xlabel("particles N")
    ax.set_title(labels[i], fontsize=9)
    ax.grid(alpha=0.3)
    if i % columns == 0:
      ax.set_ylabel(f"{split} nats per timestep")
    ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, dpi=FIGURE_DPI, format="png")
  plt.close(fig)


def compare(run_dirs, split="test", num_particles=(1, 4, 16),
            bound_names=None, seeds=1, checkpoint="auto", batch_size=None,
            out_dir="compare",
            make_dataset_and_model=factory.make_dataset_and_model,
            progress=True, log=None):
  """Evaluates what is missing and writes the table and the figure.

  Args:
    run_dirs: the run directories.
    split: the split. Default value: "test".
    num_particles: the particle counts. Default value: (1, 4, 16).
    bound_names: the bounds. Default value: all three.
    seeds: independent sweeps per cell (combined as `records.combine`).
    checkpoint: which checkpoint of each run (see `evaluation.load_run`).
    batch_size: evaluation batch size. Default value: each run's.
    out_dir: where table.md, table.csv and bounds.png go.

  Returns:
    {"rows": one dict per (run, bound, N), "text": the plain table,
    "markdown": the markdown table, "paths": the files written}.

  Raises:
    ConfigError: on a bad split, count or checkpoint name.
    WriteError: if out_dir cannot be written (checked before evaluating).
  """
  log = log or progress_lib.message
  num_particles = sorted(set(int(n) for n in num_particles))
  evaluation.check_evaluation_arguments(split, num_particles, batch_size,
                                        seeds)
  bound_names = list(bound_names or registry.BOUNDS.names)
  fileio.check_writable_dir(out_dir, "compare folder")
  sessions = [evaluation.RunEvaluation(d, checkpoint, make_dataset_and_model,
                                       log) for d in run_dirs]
  labels = run_labels(run_dirs, [s.config for s in sessions])
  rows = []
  for session, label in zip(sessions, labels):
    size = batch_size or session.config.batch_size
    for n in num_particles:
      summary = session.summary(split, bound_names, n, size, 0, seeds,
                                progress)
      for bound in bound_names:
        rows.append({"run": session.run_dir, "label": label,
                     "checkpoint": session.checkpoint, "step": session.step,
                     "split": split, "bound": bound,
                     "num_sequences": summary["num_sequences"],
                     "num_timesteps": summary["num_timesteps"],
                     **summary[bound]})
    for error in session.write_errors:
      log(f"Warning: {error}")
  paths = [os.path.join(out_dir, name)
           for name in ("table.md", "table.csv", "bounds.png")]
  markdown = markdown_table(rows, split)
  fileio.write_text(markdown, paths[0])
  fileio.write_text(_csv_text(rows), paths[1])
  write_figure(rows, paths[2], split)
  return {"rows": rows, "text": text_table(rows), "markdown": markdown,
          "paths": paths}
