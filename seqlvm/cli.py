"""The `seqlvm` command: train, eval and sample.

    seqlvm train --data chorales --bound fivo --num-particles 4 --run-dir runs/x
    seqlvm eval runs/x --split test --num-particles 16
    seqlvm sample runs/x --num 4 --steps 64 --out samples/

Flags are kebab-case and every enumerated option lists its choices. `train`
on an existing run directory resumes it with its stored configuration; flags
given again must agree with it, except the ones that only extend or tune the
run (--num-steps, --checkpoint-every, ...).
"""

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["main"]


def _train_parser(sub):
  from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
  defaults = config_lib.Config.__dataclass_fields__
  p = sub.add_parser(
      "train", help="train a model (resumes an existing run directory)",
      description="Train a sequential latent-variable model. Defaults in "
      "brackets; an existing --run-dir is resumed.")

  def arg(flag, field, help_text, **kwargs):
    default = defaults[field].default
    p.add_argument(flag, dest=field, default=None,
                   help=f"{help_text} [{default}]", **kwargs)

  p.add_argument("--run-dir", required=True,
                 help="where checkpoints, summaries and config go")
  arg("--data", "data", "dataset: 'chorales' (embedded Bach chorales, "
      "prepared on first use), jsb|nottingham|musedata|piano-midi (NAME.pkl "
      "in the data directory), or a path to a pianoroll pickle")
  arg("--model", "model", "model", choices=config_lib.MODELS)
  arg("--hidden-size", "hidden_size", "LSTM and MLP width", type=int)
  arg("--latent-size", "latent_size", "latent dimension", type=int)
  arg("--emission", "emission", "emission distribution (bernoulli for "
      "pianorolls, gaussian for real-valued frames)",
      choices=("bernoulli", "gaussian"))
  arg("--bound", "bound", "training objective",
      choices=("elbo", "iwae", "fivo"))
  arg("--num-particles", "num_particles", "particles N", type=int)
  arg("--resampling", "resampling", "FIVO resampling rule",
      choices=("ess", "always", "never"))
  arg("--threshold", "threshold", "ESS fraction for --resampling ess",
      type=float)
  arg("--scheme", "scheme", "resampling scheme",
      choices=("multinomial", "systematic", "stratified"))
  arg("--resampling-gradient", "resampling_gradient",
      "gradient through resampling", choices=("stop",))
  arg("--batch-size", "batch_size", "sequences per batch", type=int)
  arg("--learning-rate", "learning_rate", "Adam learning rate", type=float)
  arg("--clip-norm", "clip_norm", "clip gradients to this global norm "
      "(0 = off)", type=float)
  arg("--num-steps", "num_steps", "total training steps", type=int)
  arg("--checkpoint-every", "checkpoint_every", "steps between checkpoints",
      type=int)
  arg("--summary-every", "summary_every", "steps between summaries",
      type=int)
  arg("--valid-every", "valid_every", "steps between validation runs "
      "(0 = never)", type=int)
  arg("--keep-checkpoints", "keep_checkpoints", "checkpoints kept", type=int)
  arg("--on-nonfinite", "on_nonfinite", "on a NaN/inf bound or gradient: "
      "stop (keep the last good state) or skip the batch with a warning",
      choices=config_lib.ON_NONFINITE)
  arg("--pad-to-multiple", "pad_to_multiple", "pad batch lengths to a "
      "multiple of this (fewer compiled shapes)", type=int)
  p.add_argument("--no-jit", dest="jit_compile", action="store_const",
                 const=False, default=None,
                 help="do not compile the step with XLA [XLA on]")
  arg("--seed", "seed", "seed for initialisation, data order and sampling",
      type=int)
  p.add_argument("--max-minutes", type=float, default=None,
                 help="stop (with a checkpoint) after this much wall-clock "
                 "time; resume later with the same command [no limit]")
  p.add_argument("--no-progress", action="store_true",
                 help="no progress bar")
  return p


def _config_from_args(args):
  from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
  fields = [f.name for f in dataclasses.fields(config_lib.Config)]
  given = {f: getattr(args, f) for f in fields
           if getattr(args, f, None) is not None}
  stored_path = os.path.join(args.run_dir, "config.json")
  if os.path.exists(stored_path):
    # Resume: start from the stored config; given flags must agree (checked
    # by the runner) except the resumable ones.
    return config_lib.load_config(stored_path).replace(**given)
  return config_lib.Config(**given)


def _cmd_train(args):
  from seqlvm import runners  # pylint: disable=g-import-not-at-top
  config = _config_from_args(args)
  print(f"Training {config.model} with {config.bound} (N={config.num_particles}) "
        f"on {config.data}; run directory: {os.path.abspath(args.run_dir)}",
        file=sys.stderr)
  result = runners.train(
      config, args.run_dir, progress=not args.no_progress,
      max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
  print(f"Trained to step {result.step}: train {config.bound} "
        f"{result.train_bound_per_timestep:.4f} nats/step, valid "
        f"{result.valid_bound_per_timestep:.4f} nats/step.")
  if result.skipped_steps:
    print(f"Skipped {result.skipped_steps} non-finite batches.")
  print(f"Checkpoint: {result.checkpoint}")
  print(f"TensorBoard: tensorboard --logdir {args.run_dir}")
  return 0


def _cmd_eval(args):
  from seqlvm import runners  # pylint: disable=g-import-not-at-top
  results = runners.evaluate(args.run_dir, split=args.split,
                             num_particles=args.num_particles,
                             bound_names=args.bounds,
                             batch_size=args.batch_size, seed=args.seed,
                             progress=not args.no_progress)
  print(f"{results['split']} split of {results['data']}: "
        f"{results['num_sequences']} sequences, {results['num_timesteps']} "
        f"steps; checkpoint {results['checkpoint']}")
  print(f"{'bound':<6} {'N':>4} {'nats/timestep':>14} {'nats/sequence':>14}")
  for name in args.bounds or ("elbo", "iwae", "fivo"):
    r = results[name]
    print(f"{name:<6} {r['num_particles']:>4} {r['ll_per_t']:>14.4f} "
          f"{r['ll_per_seq']:>14.2f}")
  print(f"Saved: {results['path']}")
  return 0


def _cmd_sample(args):
  from seqlvm import runners  # pylint: disable=g-import-not-at-top
  paths = runners.sample(args.run_dir, num=args.num, steps=args.steps,
                         out_dir=args.out, seed=args.seed)
  print("Wrote:")
  for p in paths:
    print(f"  {p}")
  return 0


def build_parser():
  parser = argparse.ArgumentParser(
      prog="seqlvm", description="Sequential latent-variable models trained "
      "with ELBO, IWAE and FIVO.")
  sub = parser.add_subparsers(dest="command", required=True)
  _train_parser(sub).set_defaults(func=_cmd_train)

  p = sub.add_parser("eval", help="evaluate ELBO, IWAE and FIVO on a split")
  p.add_argument("run_dir")
  p.add_argument("--split", default="test", choices=("train", "valid", "test"),
                 help="[test]")
  p.add_argument("--num-particles", type=int, default=None,
                 help="particles [the run's]")
  p.add_argument("--bounds", nargs="+", choices=("elbo", "iwae", "fivo"),
                 default=None, help="[all three]")
  p.add_argument("--batch-size", type=int, default=None,
                 help="[the run's]")
  p.add_argument("--seed", type=int, default=0, help="[0]")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=_cmd_eval)

  p = sub.add_parser("sample", help="sample sequences (MIDI files and a PNG)")
  p.add_argument("run_dir")
  p.add_argument("--num", type=int, default=4, help="samples [4]")
  p.add_argument("--steps", type=int, default=64, help="steps each [64]")
  p.add_argument("--out", default=None, help="[RUN_DIR/samples]")
  p.add_argument("--seed", type=int, default=0, help="[0]")
  p.set_defaults(func=_cmd_sample)
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  from seqlvm import runners  # pylint: disable=g-import-not-at-top
  from seqlvm.config import ConfigError  # pylint: disable=g-import-not-at-top
  from seqlvm.data import DataError  # pylint: disable=g-import-not-at-top
  try:
    return args.func(args)
  except (ConfigError, DataError, runners.CheckpointError,
          runners.TrainingError) as e:
    print(f"seqlvm {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"seqlvm {args.command}: interrupted.", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
