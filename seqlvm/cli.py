"""The `seqlvm` command: train, eval, compare, sample and data.

    seqlvm train --data chorales --bound fivo --num-particles 4 --run-dir runs/x
    seqlvm eval runs/x --split test --num-particles 16 --seeds 3
    seqlvm compare runs/x runs/y --num-particles 1 4 16 --out cmp/
    seqlvm sample runs/x --num 4 --steps 64 --out samples/ --audio
    seqlvm continue runs/x --prime opening.mid --steps 32 --num 4
    seqlvm harmonize runs/x --melody tune.mid --num 4
    seqlvm inpaint runs/x --input piece.mid --from 16 --to 24
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
import signal
import sys

from seqlvm import interrupts

__all__ = ["main", "build_parser"]


def _common_parser():
  """The flags every command takes."""
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument("--verbose", action="store_true",
                 help="show TensorFlow's own log messages and warnings "
                 "[hidden below errors]")
  return p


def _train_parser(sub):
  from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
  from seqlvm import registry  # pylint: disable=g-import-not-at-top
  defaults = config_lib.Config.__dataclass_fields__
  p = sub.add_parser(
      "train", help="train a model (resumes an existing run directory)",
      parents=[_common_parser()],
      description="Train a sequential latent-variable model. Defaults in "
      "brackets; an existing --run-dir is resumed.")

  def arg(flag, field, help_text, **kwargs):
    default = defaults[field].default
    shown = default if default != "" else "unset"
    p.add_argument(flag, dest=field, default=None,
                   help=f"{help_text} [{shown}]", **kwargs)

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
  arg("--proposal-bound", "proposal_bound", "train the proposal's own "
      "variables on this bound at the same N, everything else on --bound "
      "(two sweeps per update, both annealed by a KL warm-up; fivo with "
      "iwae: a one-update form of Le et al.'s ALT scheme for AESMC); "
      "validation and evaluation use --bound (unset: all on --bound)",
      choices=registry.BOUNDS.names)
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
  arg("--batch-size", "batch_size", "sequences per batch (FIVO: 4)",
      type=int)
  arg("--learning-rate", "learning_rate", "Adam learning rate, the peak of "
      "a schedule (FIVO: 2e-4 in its flags, 1e-4 in its example script; "
      "higher here for short CPU runs)", type=float)
  arg("--lr-schedule", "lr_schedule", "learning-rate schedule: " +
      registry.SCHEDULES.help(), choices=registry.SCHEDULES.names)
  arg("--lr-decay-steps", "lr_decay_steps", "updates over which the "
      "schedule decays (0 = the training after the warm-up)", type=int)
  arg("--lr-decay-rate", "lr_decay_rate", "exponential: the factor per "
      "--lr-decay-steps", type=float)
  arg("--lr-min-fraction", "lr_min_fraction", "cosine: the final learning "
      "rate as a fraction of the peak", type=float)
  arg("--warmup-steps", "warmup_steps", "updates of linear warm-up to the "
      "peak before the schedule (0 = none)", type=int)
  arg("--kl-warmup-steps", "kl_warmup_steps", "KL annealing against "
      "posterior collapse: the training increment's latent term, log p(z) - "
      "log q(z), is weighted by a beta that rises linearly to 1 over this "
      "many updates (0 = off); validation and evaluation use the bound, and "
      "early stopping counts only the validations after the warm-up",
      type=int)
  arg("--kl-weight-start", "kl_weight_start", "the KL warm-up's first "
      "beta, in [0, 1]", type=float)
  arg("--clip-norm", "clip_norm", "clip gradients to this global norm "
      "(0 = off)", type=float)
  arg("--weight-decay", "weight_decay", "decoupled weight decay (AdamW): "
      "each update also shrinks every variable by the learning rate times "
      "this (0 = off, plain Adam, as FIVO's reference)", type=float)
  arg("--num-steps", "num_steps", "total training steps", type=int)
  arg("--checkpoint-every", "checkpoint_every", "steps between checkpoints",
      type=int)
  arg("--summary-every", "summary_every", "steps between summaries",
      type=int)
  arg("--valid-every", "valid_every", "steps between validations (0 = "
      "never); the best one's model is kept in RUN_DIR/best", type=int)
  arg("--early-stopping", "early_stopping", "stop when this many "
      "validations in a row have not improved on the best (0 = off)",
      type=int)
  arg("--valid-variance-sweeps", "valid_variance_sweeps", "independent "
      "sweeps of the first validation sequences whose log p_hat variance "
      "goes to TensorBoard (0 or 1 = off)", type=int)
  arg("--valid-samples", "valid_samples", "samples drawn into TensorBoard "
      "at each validation (0 = off)", type=int)
  arg("--keep-checkpoints", "keep_checkpoints", "checkpoints kept", type=int)
  arg("--keep-every", "keep_every", "also keep the model of every step "
      "divisible by this in RUN_DIR/kept, never pruned, to evaluate runs "
      "at equal updates (eval --checkpoint kept-N; 0 = off)", type=int)
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
  arg("--precision", "precision", "dtype of the networks' dense products "
      "in training (mixed precision; weights and log weights stay float32; "
      "evaluation and sampling run in float32): " +
      registry.PRECISIONS.help(), choices=registry.PRECISIONS.names)
  arg("--seed", "seed", "seed for initialisation, data order and sampling",
      type=int)
  arg("--init-from", "init_from", "warm start: initialise the model from "
      "this run directory's best validation checkpoint (else its newest) or "
      "from a checkpoint (RUN_DIR/best/ckpt-N, RUN_DIR/kept/ckpt-N, "
      "RUN_DIR/ckpt/ckpt-N), of the "
      "same model and sizes; the optimizer, the step and the schedules start "
      "afresh (e.g. fine-tune an IWAE-trained run on --bound fivo). Applied "
      "once, to a run without checkpoints")
  p.add_argument("--max-minutes", type=float, default=None,
                 help="stop (with a checkpoint) after this much wall-clock "
                 "time; resume later with the same command [no limit]")
  _distribute_flags(p, registry, "--batch-size is the global batch, split "
                    "into whole sequences per replica")
  p.add_argument("--no-progress", action="store_true",
                 help="no progress bar and no progress lines")
  p.add_argument("--progress-every", type=int, default=100,
                 help="steps between progress lines when stderr is not a "
                 "terminal (a log file) [100]")


def _distribute_flags(p, registry, what):
  """--distribute and --devices (train and eval)."""
  p.add_argument("--distribute", default="none",
                 choices=registry.DISTRIBUTE.names,
                 help="data-parallel over several devices or hosts: " +
                 registry.DISTRIBUTE.help() + f"; {what} [none]")
  p.add_argument("--devices", type=int, default=None,
                 help="mirrored: use this many GPUs, or create this many "
                 "logical CPU devices where there is no GPU [every GPU, or "
                 "one CPU]")


def _strategy(args):
  """The tf.distribute strategy the flags ask for (None: one device)."""
  from seqlvm.run import distribute  # pylint: disable=g-import-not-at-top
  distribute.configure_devices(args.distribute, args.devices)
  return distribute.make_strategy(args.distribute, args.devices)


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
  from seqlvm.run import distribute  # pylint: disable=g-import-not-at-top
  from seqlvm.run import training  # pylint: disable=g-import-not-at-top
  config = _config_from_args(args)
  if args.progress_every < 1:
    print("seqlvm train: error: --progress-every must be >= 1.",
          file=sys.stderr)
    return 2
  strategy = _strategy(args)
  proposal = (f", its proposal with {config.proposal_bound}"
              if config.proposal_bound not in ("", config.bound) else "")
  print(f"Training {config.model} with {config.bound} (N={config.num_particles}"
        f"){proposal} on {config.data}; run directory: "
        f"{os.path.abspath(args.run_dir)}", file=sys.stderr)
  result = training.train(
      config, args.run_dir, progress=not args.no_progress,
      max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
      progress_every=args.progress_every, strategy=strategy)
  valid = result.valid_bound_per_timestep
  train_bound = result.train_bound_per_timestep
  if not result.trained_steps:
    print(f"Nothing trained: the run is at step {result.step}" + (
        " and has stopped early." if result.stopped_early else "."))
  else:
    print(f"Trained to step {result.step}" + (
        f": train {config.bound} {train_bound:.4f} nats/step"
        if train_bound == train_bound else "") +
          (f", valid {valid:.4f} nats/step." if valid == valid else ".") +
          (" Stopped early." if result.stopped_early else ""))
  if result.skipped_steps:
    print(f"Skipped {result.skipped_steps} non-finite batches.")
  if strategy is not None and not distribute.is_chief(strategy):
    print(f"Checkpoints: written by the chief in {args.run_dir}")
    return 0
  print(f"Checkpoint: {result.checkpoint}")
  if result.best_checkpoint:
    print(f"Best: {os.path.join(args.run_dir, result.best_checkpoint)} "
          f"(valid {config.bound} "
          f"{result.best_valid_bound_per_timestep:.4f} nats/step at step "
          f"{result.best_step}; eval and sample use it)")
  print(f"TensorBoard: tensorboard --logdir {args.run_dir}")
  return 0


def _format_estimate(value, se, digits):
  """'-8.1234 ± 0.0123' (no ± for a NaN standard error)."""
  if se == se:
    return f"{value:.{digits}f} ± {se:.{digits}f}"
  return f"{value:.{digits}f}"


def _print_evaluation(results, bound_names):
  """The table of `seqlvm eval`."""
  seeds = results["seeds"]
  print(f"{results['split']} split of {results['data']}: "
        f"{results['num_sequences']} sequences, "
        f"{results['num_timesteps']} steps; checkpoint "
        f"{results['checkpoint']} (step {results['step']}); "
        f"seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(map(str, seeds))}")
  many = len(seeds) > 1
  print(f"{'bound':<6} {'N':>4} {'nats/timestep ± se':>22} "
        f"{'nats/sequence ± se':>22} {'ESS/N':>6} {'resampled':>9}" +
        (f" {'spread':>8} {'var log p':>10}" if many else ""))
  for name in bound_names:
    r = results[name]
    line = (f"{name:<6} {r['num_particles']:>4} "
            f"{_format_estimate(r['ll_per_t'], r['ll_per_t_se'], 4):>22} "
            f"{_format_estimate(r['ll_per_seq'], r['ll_per_seq_se'], 2):>22} "
            f"{r.get('ess_mean_fraction', float('nan')):>6.3f} "
            f"{r.get('resampling_rate', float('nan')):>9.3f}")
    if many:
      line += f" {r['spread']:>8.4f} {r['log_p_hat_variance']:>10.4g}"
    print(line)
  print("(se: standard error over sequences" + (
      "; spread: the standard deviation over seeds; var log p: the variance "
      "of log p_hat over seeds, mean over sequences" if many else "") + ")")
  sys.stdout.flush()


def _cmd_eval(args):
  from seqlvm import registry  # pylint: disable=g-import-not-at-top
  from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top
  from seqlvm.run import distribute  # pylint: disable=g-import-not-at-top
  names = args.bounds or list(registry.BOUNDS.names)
  strategy = _strategy(args)
  results = evaluation.evaluate(
      args.run_dir, split=args.split, num_particles=args.num_particles,
      bound_names=names, batch_size=args.batch_size, seed=args.seed,
      seeds=args.seeds, checkpoint=args.checkpoint, force=args.force,
      progress=not args.no_progress,
      report=lambda r: _print_evaluation(r, names), xla=args.xla,
      strategy=strategy)
  reused = sum(results[name]["reused"] for name in names)
  where = os.path.join(args.run_dir, "eval", args.split)
  if not distribute.is_chief(strategy):
    print(f"Records: written by the chief in {where}")
    return 0
  print(f"Records: {where}" + (
      f" ({reused} reused; --force computes them again)" if reused else ""))
  return 0


def _cmd_compare(args):
  from seqlvm.run import compare  # pylint: disable=g-import-not-at-top
  result = compare.compare(
      args.run_dirs, split=args.split, num_particles=args.num_particles,
      bound_names=args.bounds, seeds=args.seeds, checkpoint=args.checkpoint,
      batch_size=args.batch_size, out_dir=args.out,
      progress=not args.no_progress)
  print(result["text"])
  print("Wrote:")
  for path in result["paths"]:
    print(f"  {path}")
  return 0


def _cmd_sample(args):
  from seqlvm.run import sampling  # pylint: disable=g-import-not-at-top
  paths = sampling.sample(args.run_dir, num=args.num, steps=args.steps,
                          out_dir=args.out, seed=args.seed, audio=args.audio,
                          progress=not args.no_progress,
                          max_seconds=60 * args.max_minutes,
                          checkpoint=args.checkpoint)
  print("Wrote:")
  for p in paths:
    print(f"  {p}")
  return 0


def _cmd_conditioned(args):
  from seqlvm.run import conditioned  # pylint: disable=g-import-not-at-top
  common = dict(num=args.num, num_particles=args.num_particles,
                seed=args.seed, out_dir=args.out, audio=args.audio,
                checkpoint=args.checkpoint, resolution=args.resolution)
  if args.command == "continue":
    paths = conditioned.continue_run(args.run_dir, args.prime, args.steps,
                                     args.prime_steps, **common)
  elif args.command == "harmonize":
    paths = conditioned.harmonize_run(args.run_dir, args.melody, **common)
  else:
    paths = conditioned.inpaint_run(args.run_dir, args.input,
                                    getattr(args, "from"), args.to, **common)
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


def _checkpoint_flag(p, registry):
  p.add_argument("--checkpoint", default="auto",
                 help="which checkpoint: " + ", ".join(registry.CHECKPOINTS)
                 + ", ckpt-N, best-N or kept-N (--keep-every); auto is the "
                 "best validation's when the run kept one (RUN_DIR/best), "
                 "else the latest [auto]")


def _eval_parser(sub, registry):
  p = sub.add_parser(
      "eval", help="evaluate ELBO, IWAE and FIVO on a split",
      parents=[_common_parser()],
      description="Evaluate a checkpoint with each bound on a split. Each "
      "(checkpoint, split, bound, N, seed, batch size) is one record under "
      "RUN_DIR/eval/SPLIT/, with every sequence's bound, and is reused by "
      "later calls.")
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
  p.add_argument("--seeds", type=int, default=1,
                 help="independent sweeps with seeds SEED, SEED+1, ...: the "
                 "mean, its spread over seeds and the variance of log p_hat "
                 "[1]")
  _checkpoint_flag(p, registry)
  p.add_argument("--force", action="store_true",
                 help="compute again where a record exists")
  p.add_argument("--xla", action="store_true", default=None,
                 help="compile with XLA: once per padded length, so slower "
                 "for one pass over a split (5x on MuseData), faster for "
                 "each further seed of the same bound and N (3.5x); other "
                 "random streams than the default graph's (separate "
                 "records) [off]")
  _distribute_flags(p, registry, "each replica evaluates whole batches of "
                    "--batch-size, batch i on replica i mod R with its "
                    "single-device seed: the numbers of one device")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=_cmd_eval)


def _compare_parser(sub, registry):
  p = sub.add_parser(
      "compare", help="compare runs: bounds against particles, a table "
      "(markdown, CSV) and a figure",
      parents=[_common_parser()],
      description="Evaluate each run's checkpoint with each bound at each "
      "N (reusing stored records), print one table of nats per timestep "
      "with standard errors, and write it as markdown and CSV with a PNG "
      "of each run's bounds against N.")
  p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  p.add_argument("--split", default="test", choices=registry.SPLITS,
                 help="[test]")
  p.add_argument("--num-particles", type=int, nargs="+",
                 default=[1, 4, 16], help="particle counts [1 4 16]")
  p.add_argument("--bounds", nargs="+", choices=registry.BOUNDS.names,
                 default=None, help="[all three]")
  p.add_argument("--seeds", type=int, default=1,
                 help="independent sweeps per cell [1]")
  p.add_argument("--batch-size", type=int, default=None,
                 help="[each run's]")
  _checkpoint_flag(p, registry)
  p.add_argument("--out", default="compare",
                 help="folder for table.md, table.csv and bounds.png "
                 "[compare]")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=_cmd_compare)


def _conditioned_parsers(sub, registry):
  """continue, harmonize and inpaint: the particle filter given part of a
  sequence (`seqlvm.infer`)."""

  def common(p):
    p.add_argument("run_dir")
    p.add_argument("--num", type=int, default=4,
                   help="completions, each from its own particle filter [4]")
    p.add_argument("--num-particles", type=int, default=64, help="[64]")
    p.add_argument("--out", default=None,
                   help=f"[RUN_DIR/{p.prog.split()[-1]}]")
    p.add_argument("--seed", type=int, default=0, help="[0]")
    p.add_argument("--audio", action="store_true",
                   help="also render each completed pianoroll as a WAV "
                   "[off; speech runs always write WAVs]")
    p.add_argument("--resolution", default="quarter",
                   choices=registry.RESOLUTIONS.names,
                   help="a MIDI file's step, as the run's data was made "
                   "[quarter]")
    _checkpoint_flag(p, registry)
    p.set_defaults(func=_cmd_conditioned)

  p = sub.add_parser(
      "continue", help="continue a primer (MIDI, WAV or .npz)",
      parents=[_common_parser()],
      description="Filter the primer with the run's model and draw --steps "
      "more steps from particles resampled by their final weights: K "
      "continuations (MIDI and a PNG with the primer marked; WAV for speech "
      "or with --audio).")
  common(p)
  p.add_argument("--prime", required=True,
                 help="FILE.mid, FILE.wav (speech runs) or FILE.npz ('x': "
                 "[T, D] in the data's units)")
  p.add_argument("--prime-steps", type=int, default=None,
                 help="use the primer's first P steps [all]")
  p.add_argument("--steps", type=int, default=32,
                 help="steps to draw after the primer [32]")
  p = sub.add_parser(
      "harmonize", help="complete the voices below a melody",
      parents=[_common_parser()],
      description="The melody (the file's top line: at each step its "
      "highest note) is observed as on, every pitch above it as off, and "
      "everything below is drawn: K harmonisations. A step where the melody "
      "rests is drawn whole.")
  common(p)
  p.add_argument("--melody", required=True, help="FILE.mid (or .npz)")
  p = sub.add_parser(
      "inpaint", help="fill a gap given both sides",
      parents=[_common_parser()],
      description="Steps FROM..TO-1 are drawn given everything before and "
      "after them: K fillings of the gap.")
  common(p)
  p.add_argument("--input", required=True,
                 help="FILE.mid, FILE.wav (speech runs) or FILE.npz")
  p.add_argument("--from", type=int, required=True,
                 help="the gap's first step (0-based)")
  p.add_argument("--to", type=int, required=True,
                 help="the step after the gap")


def _sample_parser(sub, registry):
  p = sub.add_parser("sample", help="sample sequences (MIDI, PNG and WAV "
                     "for music; WAV for speech)",
                     parents=[_common_parser()])
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
  _checkpoint_flag(p, registry)
  p.add_argument("--no-progress", action="store_true",
                 help="no progress bar")
  p.set_defaults(func=_cmd_sample)


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

  _eval_parser(sub, registry)
  _compare_parser(sub, registry)
  _sample_parser(sub, registry)
  _conditioned_parsers(sub, registry)
  _data_parser(sub)
  return parser


# The commands that run TensorFlow (imported quietly before they start).
_TENSORFLOW_COMMANDS = ("train", "eval", "compare", "sample", "continue",
                        "harmonize", "inpaint")


def main(argv=None):
  args = build_parser().parse_args(argv)
  from seqlvm import errors  # pylint: disable=g-import-not-at-top
  from seqlvm import quiet  # pylint: disable=g-import-not-at-top
  verbose = getattr(args, "verbose", False)
  quiet.set_log_level(verbose)
  previous = interrupts.catch_sigterm()
  try:
    if args.command in _TENSORFLOW_COMMANDS or getattr(
        args, "data_command", None) == "from-audio":
      quiet.import_tensorflow(verbose)
    return args.func(args)
  except errors.SeqlvmError as e:
    print(f"seqlvm {args.command}: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # A file the code did not expect to fail.
    where = e.filename or "a file"
    print(f"seqlvm {args.command}: error: {where}: {e.strerror or e}",
          file=sys.stderr)
    return 2
  except interrupts.Terminated:
    print(f"seqlvm {args.command}: terminated (SIGTERM).", file=sys.stderr)
    return 128 + signal.SIGTERM
  except interrupts.PeerInterrupted:
    print(f"seqlvm {args.command}: stopped with another worker that was "
          "interrupted.", file=sys.stderr)
    return 128 + signal.SIGTERM
  except KeyboardInterrupt:
    print(f"seqlvm {args.command}: interrupted.", file=sys.stderr)
    return 130
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
  sys.exit(main())
