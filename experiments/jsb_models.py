"""Every model x every bound on JSB Chorales, with one step budget.

Trains each model (vrnn, srnn, draw, vrnn-wavenet, wavenet) with each bound
(ELBO, IWAE, FIVO; N = 4, batch 4) for the same number of steps, evaluates
the test split with all three bounds at N = 4, and prints a markdown table
of test nats per timestep (the bound each run was trained with, evaluated on
test) and a JSON file with every number.

The wavenet model has no latent variables: every bound equals its exact
log-likelihood, so its three trainings would be the same run; it is trained
once and its row says so.

    python experiments/jsb_models.py --data ../shared/data/pianorolls/jsb.pkl \\
        --steps 1000 --out runs/jsb_models

Run directories are resumable: rerunning continues each run to the budget.

Variants: `--latent concrete --categories K` gives the VRNN a discrete
(Concrete-relaxed) latent, and `--resampling-gradients stop score soft
concrete` trains FIVO runs with each resampling gradient estimator; their
rows are labelled with the variant.

    python experiments/jsb_models.py --models vrnn --latent concrete \
        --categories 16 --steps 1000 --out runs/jsb_concrete
    python experiments/jsb_models.py --models vrnn --bounds fivo \
        --resampling-gradients stop score soft concrete --out runs/jsb_grads
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seqlvm.run import evaluation
from seqlvm.run import training
from seqlvm.config import Config  # pylint: disable=g-import-not-at-top
from seqlvm import registry  # pylint: disable=g-import-not-at-top

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                            "data", "pianorolls", "jsb.pkl")
BOUNDS = ("elbo", "iwae", "fivo")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default=DEFAULT_DATA)
  parser.add_argument("--out", default="runs/jsb_models")
  parser.add_argument("--steps", type=int, default=1000,
                      help="training steps per run [1000]")
  parser.add_argument("--models", nargs="+", default=list(registry.MODELS.names))
  parser.add_argument("--bounds", nargs="+", default=list(BOUNDS))
  parser.add_argument("--hidden-size", type=int, default=64)
  parser.add_argument("--latent-size", type=int, default=32)
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  parser.add_argument("--eval-particles", type=int, default=4)
  parser.add_argument("--latent", default="gaussian",
                      choices=("gaussian", "concrete"))
  parser.add_argument("--categories", type=int, default=16)
  parser.add_argument("--resampling-gradients", nargs="+", default=["stop"],
                      help="FIVO runs: one per resampling gradient")
  args = parser.parse_args()
  variants = [(model, bound, gradient) for model in args.models
              for bound in args.bounds
              for gradient in (args.resampling_gradients if bound == "fivo"
                               else ["stop"])]

  def label(model, gradient):
    parts = [model]
    if args.latent != "gaussian":
      parts.append(f"{args.latent} K={args.categories}")
    if args.resampling_gradients != ["stop"]:
      parts.append(f"{gradient} gradient")
    return ", ".join(parts)

  table_path = os.path.join(args.out, "table.json")
  table = {}
  if os.path.exists(table_path):
    with open(table_path) as f:
      table = json.load(f)
  for model, bound, gradient in variants:
    key = f"{label(model, gradient)}/{bound}"
    if model == "wavenet" and bound != args.bounds[0]:
      first = f"{label(model, 'stop')}/{args.bounds[0]}"
      table[key] = dict(table[first], same_run_as=first)
      continue
    run_dir = os.path.join(args.out, model, bound)
    if args.latent != "gaussian":
      run_dir += f"-{args.latent}{args.categories}"
    if gradient != "stop":
      run_dir += f"-{gradient}"
    config = Config(data=os.path.abspath(args.data), model=model,
                    bound=bound, num_particles=4, batch_size=4,
                    hidden_size=args.hidden_size,
                    latent_size=args.latent_size, latent=args.latent,
                    categories=args.categories,
                    resampling_gradient=gradient,
                    learning_rate=args.learning_rate,
                    num_steps=args.steps, checkpoint_every=500,
                    valid_every=0, summary_every=50)
    start = time.time()
    result = training.train(config, run_dir, progress=False)
    seconds = time.time() - start
    results = evaluation.evaluate(run_dir, split="test",
                               num_particles=args.eval_particles,
                               progress=False)
    table[key] = dict(step=result.step, train_seconds=seconds, **{
        name: results[name]["ll_per_t"] for name in BOUNDS})
    print(json.dumps({key: table[key]}), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(table_path, "w") as f:
      json.dump(table, f, indent=2)
  print(f"\nTest nats per timestep on JSB ({args.steps} training steps per "
        f"run, N = 4 in training and N = {args.eval_particles} in "
        "evaluation; each cell: trained and evaluated with that bound):\n")
  print("| model | " + " | ".join(args.bounds) + " |")
  print("|---|" + "---|" * len(args.bounds))
  rows = []
  for model, _, gradient in variants:
    if label(model, gradient) not in rows:
      rows.append(label(model, gradient))
  for row_label in rows:
    cells = []
    for bound in args.bounds:
      row = table.get(f"{row_label}/{bound}")
      cells.append("" if row is None else f"{row[bound]:.3f}")
    print(f"| {row_label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
