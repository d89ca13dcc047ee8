"""Reproduction: the VRNN on JSB Chorales trained with ELBO, IWAE and FIVO.

Trains one VRNN per bound (N = 4, batch 4, same budget of wall-clock minutes
or steps) and evaluates each on the test split with all three bounds, then
prints a markdown table beside the FIVO paper's numbers for JSB.

    python experiments/jsb_bounds.py --data ../shared/data/pianorolls/jsb.pkl \\
        --minutes 30 --out runs/jsb

Run directories are resumable: rerunning continues each run to the budget.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seqlvm.run import evaluation
from seqlvm.run import training
from seqlvm.config import Config  # pylint: disable=g-import-not-at-top

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                            "data", "pianorolls", "jsb.pkl")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default=DEFAULT_DATA)
  parser.add_argument("--out", default="runs/jsb")
  parser.add_argument("--minutes", type=float, default=30.,
                      help="training budget per bound [30]")
  parser.add_argument("--max-steps", type=int, default=1000000)
  parser.add_argument("--hidden-size", type=int, default=64)
  parser.add_argument("--latent-size", type=int, default=32)
  parser.add_argument("--learning-rate", type=float, default=3e-4)
  parser.add_argument("--eval-particles", type=int, default=4)
  parser.add_argument("--bounds", nargs="+", default=["elbo", "iwae", "fivo"])
  args = parser.parse_args()
  table = {}
  for bound in args.bounds:
    run_dir = os.path.join(args.out, bound)
    config = Config(data=os.path.abspath(args.data), bound=bound,
                    num_particles=4, batch_size=4,
                    hidden_size=args.hidden_size,
                    latent_size=args.latent_size,
                    learning_rate=args.learning_rate,
                    num_steps=args.max_steps, checkpoint_every=1000,
                    valid_every=2000, pad_to_multiple=32)
    result = training.train(config, run_dir, progress=False,
                           max_seconds=60 * args.minutes)
    results = evaluation.evaluate(run_dir, split="test",
                               num_particles=args.eval_particles,
                               progress=False)
    table[bound] = dict(step=result.step, **{
        k: results[k]["ll_per_t"] for k in ("elbo", "iwae", "fivo")})
    print(json.dumps({bound: table[bound]}), flush=True)
  print(f"\nTest nats per timestep on JSB (N = {args.eval_particles} for "
        f"evaluation), {args.minutes:g} min of training per bound:\n")
  print("| trained with | steps | test ELBO | test IWAE | test FIVO |")
  print("|---|---|---|---|---|")
  for bound, row in table.items():
    print(f"| {bound} | {row['step']} | {row['elbo']:.3f} | "
          f"{row['iwae']:.3f} | {row['fivo']:.3f} |")
  with open(os.path.join(args.out, "table.json"), "w") as f:
    json.dump(table, f, indent=2)


if __name__ == "__main__":
  main()
