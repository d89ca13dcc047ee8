"""The `seqlvm` command: train, eval, sample and data.

    seqlvm train --data chorales --bound fivo --num-particles 4 --run-dir runs/x
    seqlvm eval runs/x --split test --num-particles 16
    seqlvm sample runs/x --num 4 --steps 64 --out samples/ --audio
    seqlvm data fetch jsb
    seqlvm data from-midi my_midi/ --out mine.pkl --resolution eighth
    seqlvm data from-audio TIMIT/ --out timit

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
  from seqlvm import registry  # pylint: disable=g-import-not-at-top
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
  _model_flags(arg, registry)
  _bound_flags(arg, registry)
  _training_flags(p, arg, registry)
  return p


def _model_flags(arg, registry):
  """The data and the model."""
  arg("--data", "data", "dataset: 'chorales' (embedded Bach chorales) or "
      "'speech-demo' (embedded synthesised speech), both prepared on first "
      "use; a NAME in the data directory (jsb|nottingham|musedata|piano-midi "
      "after `seqlvm data fetch`, or what `seqlvm data from-midi|from-audio "
      "--out NAME` made); or a path to a pianoroll pickle or a prepared "
      "speech folder")
  arg("--model", "model", "model: " + registry.MODELS.help(),
      choices=registry.MODELS.names)
  arg("--hidden-size", "hidden_size", "LSTM and MLP width", type=int)
  arg("--latent-size", "latent_size", "latent dimension (gaussian latent)",
      type=int)
  arg("--latent", "latent", "the latent of vrnn and vrnn-wavenet: " +
      registry.LATENTS.help(), choices=registry.LATENTS.names)
  arg("--categories", "categories", "classes K of a concrete latent",
      type=int)
  arg("--latent-temperature", "latent_temperature", "temperature of a "
      "concrete latent's relaxation", type=float)
  arg("--wavenet-channels", "wavenet_channels", "channels of the WaveNet "
      "stack (vrnn-wavenet, wavenet)", type=int)
  arg("--wavenet-layers", "wavenet_layers", "dilated layers of the WaveNet "
      "stack, dilations 1, 2, 4, ... (receptive field 2**layers + 1 steps)",
      type=int)
  arg("--emission", "emission", "emission distribution (auto: bernoulli "
      "for pianorolls, gaussian for speech frames)",
      choices=registry.EMISSION_CHOICES)


def _bound_flags(arg, registry):
  """The bound and its particle filter."""
  arg("--bound", "bound", "training objective",
      choices=registry.BOUNDS.names)
  arg("--num-particles", "num_particles", "particles N", type=int)
  arg("--resampling", "resampling", "FIVO resampling rule",
      choices=registry.CRITERIA.names)
  arg("--threshold", "threshold", "ESS fraction for --resampling ess",
      type=float)
  arg("--scheme", "scheme", "resampling scheme",
      choices=registry.SCHEMES.names)
  arg("--resampling-gradient", "resampling_gradient",
      "how FIVO's gradient treats the ancestor draw: " +
      registry.GRADIENTS.help(), choices=registry.GRADIENTS.names)
  arg("--soft-mixing", "soft_mixing", "soft resampling's weight on the "
      "particle weights against the uniform, in [0, 1] (1 = stop)",
      type=float)
  arg("--resampling-temperature", "resampling_temperature",
      "temperature of the concrete resampling gradient (> 0; lower is "
      "closer to hard resampling, with noisier gradients)", type=float)


def _training_flags(p, arg, registry):
  """The optimisation, checkpoints, summaries and budgets."""
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
      + registry.ON_NONFINITE.help(), choices=registry.ON_NONFINITE.names)
  arg("--pad-to-multiple", "pad_to_multiple", "pad batch lengths to a "
      "multiple of this (fewer compiled shapes)", type=int)
  arg("--max-length", "max_length", "cut training sequences longer than "
      "this into pieces of at most this many steps (0 = whole sequences; "
      "evaluation always uses whole sequences); e.g. 256 for MuseData and "
      "Piano-midi.de", type=int)
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


def _config_from_args(args):
  """The Config the flags ask for; warns of given flags it ignores."""
  from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
  fields = [f.name for f in dataclasses.fields(config_lib.Config)]
  given = {f: getattr(args, f) for f in fields
           if getattr(args, f, None) is not None}
  stored_path = os.path.join(args.run_dir, "config.json")
  if os.path.exists(stored_path):
    # Resume: start from the stored config; given flags must agree (checked
    # by the runner) except the resumable ones.
    config = config_lib.load_config(stored_path).replace(**given)
  else:
    config = config_lib.Config(**given)
  for name, needs in config_lib.ignored_fields(config, given):
    flag = "--" + name.replace("_", "-")
    print(f"Warning: {flag} {given[name]} has no effect here: it applies to "
          f"{needs} only.", file=sys.stderr)
  return config


def _cmd_train(args):
  from seqlvm.run import training  # pylint: disable=g-import-not-at-top
  config = _config_from_args(args)
  print(f"Training {config.model} with {config.bound} (N={config.num_particles}) "
        f"on {config.data}; run directory: {os.path.abspath(args.run_dir)}",
        file=sys.stderr)
  result = training.train(
      config, args.run_dir, progress=not args.no_progress,
      max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
  valid = result.valid_bound_per_timestep
  train_bound = result.train_bound_per_timestep
  if not result.trained_steps:
    print(f"Nothing trained: the run is at step {result.step}.")
  else:
    print(f"Trained to step {result.step}" + (
        f": train {config.bound} {train_bound:.4f} nats/step"
        if train_bound == train_bound else "") +
          (f", valid {valid:.4f} nats/step." if valid == valid else "."))
  if result.skipped_steps:
    print(f"Skipped {result.skipped_steps} non-finite batches.")
  print(f"Checkpoint: {result.checkpoint}")
  print(f"TensorBoard: tensorboard --logdir {args.run_dir}")
  return 0


def _cmd_eval(args):
  from seqlvm import registry  # pylint: disable=g-import-not-at-top
  from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top

  def report(results):  # Printed before saving: a failed save loses nothing.
    print(f"{results['split']} split of {results['data']}: "
          f"{results['num_sequences']} sequences, "
          f"{results['num_timesteps']} steps; checkpoint "
          f"{results['checkpoint']}")
    print(f"{'bound':<6} {'N':>4} {'nats/timestep':>14} "
          f"{'nats/sequence':>14}")
    for name in args.bounds or registry.BOUNDS.names:
      r = results[name]
      print(f"{name:<6} {r['num_particles']:>4} {r['ll_per_t']:>14.4f} "
            f"{r['ll_per_seq']:>14.2f}")
    sys.stdout.flush()

  results = evaluation.evaluate(args.run_dir, split=args.split,
                                num_particles=args.num_particles,
                                bound_names=args.bounds,
                                batch_size=args.batch_size, seed=args.seed,
                                progress=not args.no_progress, report=report)
  print(f"Saved: {results['path']}")
  return 0


def _cmd_sample(args):
  from seqlvm.run import sampling  # pylint: disable=g-import-not-at-top
  paths = sampling.sample(args.run_dir, num=args.num, steps=args.steps,
                          out_dir=args.out, seed=args.seed, audio=args.audio,
                          progress=not args.no_progress,
                          max_seconds=60 * args.max_minutes)
  print("Wrote:")
  for p in paths:
    print(f"  {p}")
  return 0


def _out_path(out, suffix=""):
  """A bare NAME goes into the data directory (so --data NAME finds it);
  anything else (a path with a folder, ".", "..") is a path."""
  from seqlvm.data import registry  # pylint: disable=g-import-not-at-top
  if not registry.is_bare_name(out):
    return out
  if suffix and not out.endswith(suffix):
    out += suffix
  from seqlvm.data.prepare import chorales  # pylint: disable=g-import-not-at-top
  return os.path.join(chorales.data_dir(), out)


def _cmd_fetch(args):
  from seqlvm.data.prepare import fetch  # pylint: disable=g-import-not-at-top
  names = sorted(fetch.load_manifest()) if args.name == "all" else [args.name]
  if args.source and len(names) > 1:
    print("seqlvm data fetch: --from takes one dataset, not all.",
          file=sys.stderr)
    return 2
  for name in names:
    path = fetch.fetch(name, source=args.source, directory=args.dir,
                       force=args.force, progress=not args.no_progress)
    print(path)
  return 0


def _cmd_from_midi(args):
  from seqlvm.data.prepare import from_midi  # pylint: disable=g-import-not-at-top
  report = from_midi.from_midi(
      args.directory, _out_path(args.out, ".pkl"),
      resolution=args.resolution, seed=args.seed,
      valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
      strict=args.strict, progress=not args.no_progress)
  print(report["path"])
  return 0


def _cmd_from_audio(args):
  from seqlvm.data.prepare import from_audio  # pylint: disable=g-import-not-at-top
  out = _out_path(args.out)
  from_audio.from_audio(
      args.directory, out, frame_size=args.frame_size,
      sample_rate=args.sample_rate, seed=args.seed,
      valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
      exclude_sa=args.exclude_sa, shard_mb=args.shard_mb,
      strict=args.strict, force=args.force, progress=not args.no_progress)
  print(out)
  return 0


def _cmd_list(args):
  del args
  from seqlvm.data.prepare import chorales  # pylint: disable=g-import-not-at-top
  from seqlvm.data.prepare import fetch  # pylint: disable=g-import-not-at-top
  from seqlvm.data import registry  # pylint: disable=g-import-not-at-top
  directory = chorales.data_dir()
  print(f"Data directory: {directory} (set SEQLVM_DATA_DIR to change it)")
  rows = [("chorales", "embedded Bach chorales (music21), prepared on use"),
          ("speech-demo", "embedded synthesised speech (espeak-ng), "
           "prepared on use")]
  for name, entry in sorted(fetch.load_manifest().items()):
    rows.append((name, f"{entry['title']} (seqlvm data fetch {name})"))
  found = set()
  if os.path.isdir(directory):
    for entry in sorted(os.listdir(directory)):
      name = entry[:-4] if entry.endswith(".pkl") else entry
      if registry.named_path(name, directory):
        found.add(name)
        if name not in dict(rows):
          rows.append((name, "prepared here"))
  for name, what in rows:
    print(f"  {'*' if name in found else ' '} {name:<14} {what}")
  print("* = ready in the data directory; use with --data NAME.")
  return 0


def _data_parser(sub):
  from seqlvm import registry  # pylint: disable=g-import-not-at-top
  p = sub.add_parser("data", help="get and prepare datasets")
  data_sub = p.add_subparsers(dest="data_command", required=True)

  _fetch_parser(data_sub, registry)
  _from_midi_parser(data_sub, registry)
  _from_audio_parser(data_sub)
  q = data_sub.add_parser("list", help="the named datasets and which are "
                          "ready")
  q.set_defaults(func=_cmd_list)


def _preparation_flags(q, valid_fraction, test_fraction):
  """The flags every preparation command shares."""
  q.add_argument("--seed", type=int, default=0,
                 help="seed of the shuffled split [0]")
  q.add_argument("--valid-fraction", type=float, default=valid_fraction,
                 help="share of files for valid, without train/valid/test "
                 f"sub-folders [{valid_fraction}]")
  q.add_argument("--test-fraction", type=float, default=test_fraction,
                 help=f"share of files for test [{test_fraction}]")
  q.add_argument("--strict", action="store_true",
                 help="stop at the first bad file instead of skipping it")
  q.add_argument("--no-progress", action="store_true")


def _fetch_parser(data_sub, registry):
  q = data_sub.add_parser(
      "fetch", help="download a standard pianoroll set and verify it",
      description="Download one of the four Boulanger-Lewandowski et al. "
      "(ICML 2012) pianoroll sets into the data directory, verifying a "
      "checksum of its content against data/pianorolls.json.")
  q.add_argument("name", choices=registry.PIANOROLL_SETS + ("all",))
  q.add_argument("--from", dest="source", default=None,
                 help="a local copy or a mirror's URL [the original home]")
  q.add_argument("--dir", default=None, help="[the data directory]")
  q.add_argument("--force", action="store_true",
                 help="fetch again even if already there")
  q.add_argument("--no-progress", action="store_true")
  q.set_defaults(func=_cmd_fetch)


def _from_midi_parser(data_sub, registry):
  q = data_sub.add_parser(
      "from-midi", help="turn a folder of MIDI files into a pianoroll set",
      description="Quantise every MIDI file under DIRECTORY to a binary "
      "pianoroll on a beat grid (drums dropped, notes outside 21..108 "
      "dropped and counted) and write a pianoroll pickle. Sub-folders "
      "train/, valid/, test/ give the split; otherwise a seeded shuffle.")
  q.add_argument("directory")
  q.add_argument("--out", required=True,
                 help="the pickle to write; a bare NAME goes into the data "
                 "directory, where --data NAME finds it")
  q.add_argument("--resolution", default="quarter",
                 choices=registry.RESOLUTIONS.names,
                 help="one step per quarter, eighth or sixteenth note "
                 "[quarter]")
  _preparation_flags(q, 0.1, 0.1)
  q.set_defaults(func=_cmd_from_midi)


def _from_audio_parser(data_sub):
  q = data_sub.add_parser(
      "from-audio", help="turn a folder of WAV/NIST SPHERE files into a "
      "speech set",
      description="Read every .wav/.sph/.flac file under DIRECTORY, cut each "
      "utterance into non-overlapping frames and write TFRecord shards and "
      "a manifest (with the training mean and standard deviation). A tree "
      "with TRAIN/ and TEST/ folders but no valid/ (TIMIT's layout) is split "
      "as FIVO splits TIMIT (valid: 5% of TRAIN, at least one file, seed "
      "1234; --seed and "
      "--valid-fraction do not apply); otherwise sub-folders train/, valid/, "
      "test/, else a seeded shuffle.")
  q.add_argument("directory")
  q.add_argument("--out", required=True,
                 help="the folder to write; a bare NAME goes into the data "
                 "directory, where --data NAME finds it")
  q.add_argument("--frame-size", type=int, default=200,
                 help="samples per frame (one timestep) [200]")
  q.add_argument("--sample-rate", type=int, default=None,
                 help="resample every file to this rate [the files' own; "
                 "required if they differ]")
  q.add_argument("--exclude-sa", action="store_true",
                 help="TIMIT: leave out the SA1/SA2 sentences (FIVO keeps "
                 "them: 4389/231/1680) [kept]")
  q.add_argument("--shard-mb", type=float, default=128,
                 help="megabytes per TFRecord shard [128]")
  q.add_argument("--force", action="store_true",
                 help="replace an existing output folder")
  _preparation_flags(q, 0.05, 0.1)
  q.set_defaults(func=_cmd_from_audio)


def build_parser():
  from seqlvm import registry  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog="seqlvm", description="Sequential latent-variable models trained "
      "with ELBO, IWAE and FIVO.")
  import seqlvm  # pylint: disable=g-import-not-at-top
  parser.add_argument("--version", action="version",
                      version=f"seqlvm {seqlvm.__version__}")
  sub = parser.add_subparsers(dest="command", required=True)
  _train_parser(sub).set_defaults(func=_cmd_train)

  p = sub.add_parser("eval", help="evaluate ELBO, IWAE and FIVO on a split")
  p.add_argument("run_dir")
  p.add_argument("--split", default="test", choices=registry.SPLITS,
                 help="[test]")
  p.add_argument("--num-particles", type=int, default=None,
                 help="particles [the run's]")
  p.add_argument("--bounds", nargs="+", choices=registry.BOUNDS.names,
                 default=None, help="[all three]")
  p.add_argument("--batch-size", type=int, default=None,
                 help="[the run's]")
  p.add_argument("--seed", type=int, default=0, help="[0]")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=_cmd_eval)

  p = sub.add_parser("sample", help="sample sequences (MIDI, PNG and WAV "
                     "for music; WAV for speech)")
  p.add_argument("run_dir")
  p.add_argument("--num", type=int, default=4, help="samples [4]")
  p.add_argument("--steps", type=int, default=64, help="steps each [64]")
  p.add_argument("--out", default=None, help="[RUN_DIR/samples]")
  p.add_argument("--seed", type=int, default=0, help="[0]")
  p.add_argument("--audio", action="store_true",
                 help="also render each sampled pianoroll as a WAV with a "
                 "simple additive synthesiser [off]")
  p.add_argument("--max-minutes", type=float, default=10.,
                 help="time budget: stop early, writing nothing, when "
                 "sampling would take longer [10]")
  p.add_argument("--no-progress", action="store_true",
                 help="no progress bar")
  p.set_defaults(func=_cmd_sample)
  _data_parser(sub)
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  from seqlvm import errors  # pylint: disable=g-import-not-at-top
  try:
    return args.func(args)
  except errors.SeqlvmError as e:
    print(f"seqlvm {args.command}: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # A file the code did not expect to fail.
    where = e.filename or "a file"
    print(f"seqlvm {args.command}: error: {where}: {e.strerror or e}",
          file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"seqlvm {args.command}: interrupted.", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
