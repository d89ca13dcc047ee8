"""Memory and time on the long pianoroll sets (MuseData, Piano-midi.de).

Their pieces run to thousands of steps (MuseData up to 4273, Piano-midi.de
up to 3857). Each job runs in its own process and reports its peak resident
memory (ru_maxrss) and time:

- `step-whole`: one XLA training step (VRNN, FIVO, N = 4, batch 4) on the
  four longest training pieces, whole: the worst case of training without
  chunking (the gradient keeps every step's activations).
- `step-chunked`: the same pieces cut with --max-length (default 256), one
  step on a batch of the longest chunks.
- `eval-whole`: the whole test split, every piece whole, with ELBO, IWAE and
  FIVO (N = 4), as `seqlvm eval` runs it (graph mode, length buckets).

    python experiments/long_sequences.py --data ../shared/data/pianorolls/musedata.pkl
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time



def _job(args):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from seqlvm import data  # pylint: disable=g-import-not-at-top
  from seqlvm.run import evaluation
  from seqlvm.run import factory
  from seqlvm.run import training
  from seqlvm.config import Config  # pylint: disable=g-import-not-at-top
  from seqlvm.data import sources  # pylint: disable=g-import-not-at-top
  source = data.open_source(args.data)
  config = Config(data=args.data, max_length=args.max_length)
  model = factory.build_model(config, source.data_size, source.train_mean,
                              emission="bernoulli")
  start = time.time()
  result = {"job": args.job}
  if args.job.startswith("step"):
    train = sorted(source.sequences("train"), key=len)[-4:]
    if args.job == "step-chunked":
      train = sorted(sources.chunk_sequences(train, args.max_length),
                     key=len)[-4:]
    x, lengths = data.pad_batch(train, pad_to_multiple=32)
    optimizer = tf_keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step = training.make_train_step(model, optimizer, config,
                                   source.data_size, mode="xla")
    seed = tf.constant([0, 0], tf.int32)
    bound = step(tf.constant(x), tf.constant(lengths), seed)[0]
    compiled = time.time()
    for i in range(args.repeats):
      bound = step(tf.constant(x), tf.constant(lengths),
                   tf.constant([0, i + 1], tf.int32))[0]
    result.update(padded_length=int(x.shape[0]),
                  lengths=lengths.tolist(), bound_per_t=float(bound),
                  first_call_s=compiled - start,
                  seconds_per_step=(time.time() - compiled) / args.repeats)
  else:
    evaluator = evaluation.Evaluator(model, config, source.data_size)
    for name in ("elbo", "iwae", "fivo"):
      result[name] = evaluator(source, "test", name, 4, 4).per_timestep
    result.update(sequences=source.num_sequences("test"),
                  timesteps=source.num_timesteps("test"),
                  longest=source.max_length("test"),
                  seconds=time.time() - start)
  result["peak_rss_mib"] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 1024.
  print("RESULT " + json.dumps(result))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", required=True,
                      help="a long pianoroll pickle (musedata, piano-midi)")
  parser.add_argument("--max-length", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--jobs", nargs="+",
                      default=["step-whole", "step-chunked", "eval-whole"])
  parser.add_argument("--job", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--out", default=None, help="JSON results")
  args = parser.parse_args(argv)
  if args.job:
    _job(args)
    return
  results = []
  for job in args.jobs:
    output = subprocess.run(
        [sys.executable, __file__, "--data", args.data, "--max-length",
         str(args.max_length), "--repeats", str(args.repeats), "--job", job],
        check=True, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).stdout
    line = [l for l in output.splitlines() if l.startswith("RESULT ")][-1]
    results.append(json.loads(line[len("RESULT "):]))
    print(json.dumps(results[-1]), flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"data": args.data, "results": results}, f, indent=2)


if __name__ == "__main__":
  main()
