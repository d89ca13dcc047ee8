"""Peak memory of preparing and training on a speech set larger than 1 GB.

Speech corpora need not fit in memory: `seqlvm data from-audio` streams file
by file into TFRecord shards, and training streams from the shards through
tf.data (interleaved shards, a bounded shuffle buffer, bucketing). This
builds a folder of WAV files whose prepared shards exceed `--gigabytes`
(default 1.05 GB of float32 samples) by tiling the embedded speech demo's
utterances with random gains and offsets, prepares it, trains on it, and
trains on the small demo set for comparison; each in its own process, whose
peak resident memory (ru_maxrss) is reported against the data size.

    python experiments/stream_memory.py --work /tmp/stream   # about 10 min

Needs espeak-ng (for the demo utterances it tiles). Writes the table to
stdout and, with --out, as JSON.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _measure(command, env):
  start = time.time()
  proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  _, status, usage = os.wait4(proc.pid, 0)
  output = proc.stdout.read()
  proc.stdout.close()
  if os.waitstatus_to_exitcode(status) != 0:
    print(output[-3000:], file=sys.stderr)
    raise SystemExit(f"failed: {' '.join(command)}")
  return time.time() - start, usage.ru_maxrss / 1024., output


def _tile_demo(demo_dir, out_dir, target_bytes, seed=0):
  """Writes 16-bit WAV files tiling the demo's utterances until the float32
  size of their samples reaches target_bytes. Returns that size."""
  import soundfile  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from seqlvm.data.formats import speech  # pylint: disable=g-import-not-at-top
  manifest = speech.read_manifest(demo_dir)
  rate = manifest["sample_rate"]
  waves = []
  for shard in manifest["splits"]["train"]["shards"]:
    for record in tf.data.TFRecordDataset(os.path.join(demo_dir, shard)):
      example = tf.train.Example.FromString(record.numpy())
      waves.append(np.frombuffer(
          example.features.feature["samples"].bytes_list.value[0], "<f4"))
  rng = np.random.RandomState(seed)
  total, i = 0, 0
  while total < target_bytes:
    split = "train" if i % 20 < 18 else ("valid" if i % 20 == 18 else "test")
    folder = os.path.join(out_dir, split)
    os.makedirs(folder, exist_ok=True)
    wave = waves[rng.randint(len(waves))]
    # Two utterances joined with a random gain and a random start.
    other = waves[rng.randint(len(waves))]
    joined = np.concatenate([wave[rng.randint(len(wave) // 4):], other])
    joined = np.clip(joined * rng.uniform(0.5, 1.5), -1, 1)
    soundfile.write(os.path.join(folder, f"utt{i:06d}.wav"), joined, rate,
                    subtype="PCM_16")
    total += 4 * (len(joined) // 200 * 200)
    i += 1
  return total, i


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--work", required=True,
                      help="scratch folder (needs about 2 GB)")
  parser.add_argument("--gigabytes", type=float, default=1.05)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--out", default=None, help="JSON results")
  args = parser.parse_args(argv)
  env = dict(os.environ, SEQLVM_DATA_DIR=os.path.join(args.work, "data"),
             TF_CPP_MIN_LOG_LEVEL="2")
  seqlvm = [sys.executable, "-m", "seqlvm.cli"]
  from seqlvm.data.prepare import speech_demo  # pylint: disable=g-import-not-at-top
  demo = speech_demo.prepare_speech_demo(directory=env["SEQLVM_DATA_DIR"],
                                         progress=False)
  wav_dir = os.path.join(args.work, "wav")
  big = os.path.join(env["SEQLVM_DATA_DIR"], "big-speech")
  if not os.path.exists(os.path.join(big, "manifest.json")):
    t = time.time()
    size, count = _tile_demo(demo, wav_dir, args.gigabytes * 1e9)
    print(f"wrote {count} WAV files ({size / 1e9:.2f} GB as float32) in "
          f"{time.time() - t:.0f} s", flush=True)
    prepare = _measure(seqlvm + ["data", "from-audio", wav_dir, "--out", big,
                                 "--no-progress"], env)
  else:
    prepare = (float("nan"), float("nan"), "")

  def shard_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, f))
               for f in os.listdir(folder) if f.endswith(".tfrecord"))

  results = {"prepare_big": {"seconds": prepare[0], "peak_rss_mib":
                             prepare[1]}}
  for name, data in (("demo", "speech-demo"), ("big", big)):
    run_dir = os.path.join(args.work, f"run-{name}")
    seconds, rss, output = _measure(
        seqlvm + ["train", "--data", data, "--run-dir", run_dir,
                  "--num-steps", str(args.steps), "--valid-every", "0",
                  "--checkpoint-every", str(args.steps), "--no-progress"],
        env)
    folder = demo if name == "demo" else big
    results[f"train_{name}"] = {
        "shards_gb": shard_bytes(folder) / 1e9, "seconds": seconds,
        "peak_rss_mib": rss, "steps": args.steps,
        "last_line": output.strip().splitlines()[-4:]}
  print(f"{'job':<14} {'shards (GB)':>12} {'peak RSS (MiB)':>15} "
        f"{'seconds':>8}")
  print(f"{'prepare big':<14} {results['train_big']['shards_gb']:>12.2f} "
        f"{results['prepare_big']['peak_rss_mib']:>15.0f} "
        f"{results['prepare_big']['seconds']:>8.0f}")
  for name in ("demo", "big"):
    r = results[f"train_{name}"]
    print(f"{'train ' + name:<14} {r['shards_gb']:>12.2f} "
          f"{r['peak_rss_mib']:>15.0f} {r['seconds']:>8.0f}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
