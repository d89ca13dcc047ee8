"""Data-parallel training and evaluation (`seqlvm.run.distribute`).

Logical CPU devices and cluster workers need fresh processes: the cases run
in tests/run/distributed_cases.py (one process each) or through the CLI.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _case(*args, env=None, timeout=400):
  result = subprocess.run(
      [sys.executable, "-m", "tests.run.distributed_cases", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=timeout,
      env={**os.environ, **(env or {})})
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
  assert result.returncode == 0 and lines, result.stderr[-3000:]
  return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
  from tests.conftest import write_tiny_pianorolls
  path = write_tiny_pianorolls(tmp_path_factory.mktemp("d") / "tiny.pkl")
  return _case("mirrored", path)


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_mirrored_step_equals_single_device_step(mirrored, mode):
  """Two logical CPU replicas on the global batch of 4 (2 sequences each,
  lengths 8, 5 | 7, 3) against one device: the LGSSM's IWAE with the
  smoothing proposal is exact, so noise cannot hide a difference."""
  assert mirrored["replicas"] == 2
  single, many = mirrored[mode]["single"], mirrored[mode]["mirrored"]
  assert single["applied"] and many["applied"]
  np.testing.assert_allclose(many["bound"], single["bound"], rtol=1e-6)
  np.testing.assert_allclose(many["grad_norm"], single["grad_norm"],
                             rtol=1e-5)
  # One Adam step moved the weights (lr 0.01), identically.
  np.testing.assert_allclose(many["weights"], single["weights"], rtol=0,
                             atol=2e-7)
  assert many["copies_equal"]
  # Each replica ran over its own longest sequence, not the global one.
  assert many["share_steps"] == [8, 7]


def test_mirrored_step_anneals_the_kl_weight(mirrored):
  """Under a KL warm-up (beta 0.5 at the first update) each replica's sweep
  takes the schedule's weight: the objective is the sum of the replicas'
  annealed sweeps (replayed with their seeds), not the exact bound."""
  by_hand = mirrored["kl_warmup"]["by_hand"]
  many = mirrored["kl_warmup"]["mirrored"]
  assert by_hand["beta"] == 0.5 and many["applied"]
  np.testing.assert_allclose(many["bound"], by_hand["bound"], rtol=1e-6)
  np.testing.assert_allclose(by_hand["plain"],
                             mirrored["graph"]["single"]["bound"], rtol=1e-6)
  assert abs(by_hand["bound"] - by_hand["plain"]) > 1e-2


def test_all_padding_share_adds_exactly_zero(mirrored):
  padding = mirrored["padding"]
  # The replica's own contribution: exactly zero loss and gradient.
  assert padding["local"]["loss"] == 0.0
  assert padding["local"]["grad_abs_max"] == 0.0
  assert padding["local"]["steps"] == 1
  # So two replicas, the second all padding, train like one device on the
  # first share alone (and like one device on the padded global batch).
  first, many = padding["first_share_only"], padding["mirrored"]
  np.testing.assert_allclose(many["bound"], first["bound"], rtol=1e-6)
  np.testing.assert_allclose(many["weights"], first["weights"], atol=2e-7)
  np.testing.assert_allclose(padding["single"]["weights"], first["weights"],
                             atol=2e-7)
  assert many["share_steps"] == [8, 1]


def test_distributed_input_is_the_single_device_stream_split(mirrored):
  """From step 3 on, the replicas' shares are the single-device batches'
  sequences 0-1 and 2-3, each cut to its own longest sequence."""
  assert mirrored["input"] == {"same_sequences": True,
                               "cut_to_own_length": True}


def _free_ports(count):
  import socket  # pylint: disable=g-import-not-at-top
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _tf_configs(count=2):
  hosts = [f"127.0.0.1:{p}" for p in _free_ports(count)]
  return [json.dumps({"cluster": {"worker": hosts},
                      "task": {"type": "worker", "index": i}})
          for i in range(count)]


def _spawn(command, tf_config, log_path, env=None):
  """One TF_CONFIG worker. Two of them share the machine's cores with the
  other tests, so each gets one intra-op thread."""
  env = {**os.environ, "TF_CONFIG": tf_config, "CUDA_VISIBLE_DEVICES": "",
         "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2",
         **(env or {})}
  log = open(log_path, "w")  # pylint: disable=consider-using-with
  return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT, text=True), log


def _workers(args, tmp_path, name, timeout=300, env=None):
  """Runs a case as two TF_CONFIG workers on 127.0.0.1; their results."""
  started = [_spawn([sys.executable, "-m", "tests.run.distributed_cases",
                     *args], config, tmp_path / f"{name}-{i}.log", env)
             for i, config in enumerate(_tf_configs())]
  results = []
  try:
    for i, (process, log) in enumerate(started):
      process.wait(timeout=timeout)
      log.close()
      text = (tmp_path / f"{name}-{i}.log").read_text()
      lines = [l for l in text.splitlines() if l.startswith("RESULT ")]
      assert process.returncode == 0 and lines, text[-3000:]
      results.append(json.loads(lines[-1][len("RESULT "):]))
  finally:
    for process, log in started:
      if process.poll() is None:
        process.kill()
      log.close()
  return results


def test_two_workers_equal_one_process_on_the_combined_batch(tmp_path):
  """Noise-free (the LGSSM's exact IWAE): two MultiWorkerMirrored workers
  on 127.0.0.1, 2 sequences each, 3 updates, against one process on the
  4 sequences."""
  chief, worker = _workers(["lgssm-steps", "multi-worker"], tmp_path, "lg")
  single = _case("lgssm-steps", "none")
  assert chief["chief"] and not worker["chief"]
  assert chief["weights"] == worker["weights"]
  np.testing.assert_allclose(chief["bounds"], single["bounds"], rtol=1e-6)
  np.testing.assert_allclose(chief["weights"], single["weights"], atol=1e-6)
  assert not np.allclose(single["weights"][0], single["initial"][0],
                         atol=1e-3)  # They moved.


@pytest.fixture(scope="module")
def vrnn_workers(tmp_path_factory):
  """A tiny VRNN trained 3 steps through `training.train` by two workers:
  (the folder, the pickle, the run directory, the workers' results)."""
  from tests.conftest import write_tiny_pianorolls
  tmp_path = tmp_path_factory.mktemp("workers")
  data = write_tiny_pianorolls(tmp_path / "tiny.pkl")
  run_dir = tmp_path / "run"
  (tmp_path / "tmp").mkdir()
  results = _workers(["vrnn-train", "multi-worker", str(run_dir), data],
                     tmp_path, "vrnn", env={"TMPDIR": str(tmp_path / "tmp")})
  return tmp_path, data, run_dir, results


def test_two_workers_train_a_vrnn_like_two_local_replicas(vrnn_workers):
  """Two workers: identical weights on both, the chief's checkpoint in the
  run directory, and (same replica count, so the same seeds and shares) the
  weights of a MirroredStrategy run over 2 logical CPUs in one process."""
  tmp_path, data, run_dir, (chief, worker) = vrnn_workers
  assert chief["step"] == worker["step"] == 3
  assert chief["weights"] == worker["weights"]
  assert (run_dir / "ckpt" / "ckpt-3.index").exists()
  # Worker 1 trained in a private copy of the run directory, deleted at the
  # end (it wrote its checkpoint there, so it existed).
  assert worker["private_run_dir"] != str(run_dir)
  assert not list((tmp_path / "tmp").glob("seqlvm-worker*"))
  assert chief["private_run_dir"] == str(run_dir)
  mirrored = _case("vrnn-train", "mirrored", str(tmp_path / "mirrored"),
                   data, "2")
  for a, b in zip(chief["weights"], mirrored["weights"]):
    np.testing.assert_allclose(a, b, atol=1e-5)


def _train_command(data, run_dir, num_steps):
  """`seqlvm train` of a tiny VRNN as a multi-worker cluster's worker, a
  checkpoint every 20 steps."""
  return [sys.executable, "-m", "seqlvm.cli", "train", "--data", data,
          "--run-dir", str(run_dir), "--hidden-size", "8",
          "--latent-size", "4", "--batch-size", "4", "--num-steps",
          str(num_steps), "--checkpoint-every", "20", "--valid-every", "0",
          "--valid-samples", "0", "--progress-every", "20",
          "--distribute", "multi-worker", "--no-jit"]


def _wait_for_a_checkpoint(run_dir, chief, timeout=240):
  """Until the run directory has a checkpoint (or the chief ended)."""
  import time  # pylint: disable=g-import-not-at-top
  from seqlvm.run import rundir  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  while (not rundir.checkpoint_files(run_dir / "ckpt") and
         time.time() < deadline and chief.poll() is None):
    time.sleep(0.2)


def test_killed_worker_restarts_from_the_checkpoint(tmp_path):
  """SIGKILL worker 1 once a checkpoint exists (and then the chief, as a
  scheduler restarting the job would); both restarted with the same
  command resume from the newest checkpoint's step and finish."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from seqlvm.run import rundir  # pylint: disable=g-import-not-at-top
  from tests.conftest import write_tiny_pianorolls
  data = write_tiny_pianorolls(tmp_path / "tiny.pkl")
  run_dir = tmp_path / "run"
  command = _train_command(data, run_dir, 120)
  started = [_spawn(command, c, tmp_path / f"first-{i}.log")
             for i, c in enumerate(_tf_configs())]
  _wait_for_a_checkpoint(run_dir, started[0][0])
  started[1][0].send_signal(signal.SIGKILL)
  time.sleep(1.)
  started[0][0].send_signal(signal.SIGKILL)
  for process, log in started:
    process.wait(timeout=60)
    log.close()
  first = (tmp_path / "first-0.log").read_text()
  found = rundir.checkpoint_files(run_dir / "ckpt")
  assert found, first[-3000:]
  resume_step = rundir.checkpoint_number(found[-1])
  assert 20 <= resume_step < 120
  restarted = [_spawn(command, c, tmp_path / f"second-{i}.log")
               for i, c in enumerate(_tf_configs())]
  for process, log in restarted:
    process.wait(timeout=400)
    log.close()
  logs = [(tmp_path / f"second-{i}.log").read_text() for i in range(2)]
  for i, (process, _) in enumerate(restarted):
    assert process.returncode == 0, logs[i][-3000:]
    assert f"at step {resume_step}." in logs[i], logs[i][-3000:]
  assert "Trained to step 120" in logs[0]
  assert rundir.checkpoint_number(
      rundir.checkpoint_files(run_dir / "ckpt")[-1]) == 120
  # The run directory is whole: its config and records read back.
  assert json.loads((run_dir / "config.json").read_text())["num_steps"] == 120


def test_sigterm_to_one_worker_stops_both_at_one_step(tmp_path):
  """SIGTERM to worker 1 once a checkpoint exists: both workers stop at the
  same step and save there (worker 1 exits 143 with its own signal, the
  chief 143 with its peer's), instead of the chief waiting for a lost
  worker and losing the steps since its last checkpoint."""
  import signal  # pylint: disable=g-import-not-at-top
  from seqlvm.run import rundir  # pylint: disable=g-import-not-at-top
  from tests.conftest import write_tiny_pianorolls
  data = write_tiny_pianorolls(tmp_path / "tiny.pkl")
  run_dir = tmp_path / "run"
  command = _train_command(data, run_dir, 100000)
  started = [_spawn(command, c, tmp_path / f"w{i}.log")
             for i, c in enumerate(_tf_configs())]
  try:
    _wait_for_a_checkpoint(run_dir, started[0][0])
    started[1][0].send_signal(signal.SIGTERM)
    for process, log in started:
      process.wait(timeout=120)
      log.close()
  finally:
    for process, log in started:
      if process.poll() is None:
        process.kill()
      log.close()
  logs = [(tmp_path / f"w{i}.log").read_text() for i in range(2)]
  for (process, _), text in zip(started, logs):
    assert process.returncode == 128 + signal.SIGTERM, text[-3000:]
  stops = [re.findall(r"Interrupted at step (\d+)( \(another worker was\))?"
                      r"; saved", text) for text in logs]
  assert [len(s) for s in stops] == [1, 1], logs
  (chief_step, chief_peer), (worker_step, worker_peer) = (stops[0][0],
                                                          stops[1][0])
  assert chief_step == worker_step and chief_peer and not worker_peer
  assert "stopped with another worker that was interrupted" in logs[0]
  assert "Lost contact" not in logs[0] + logs[1]
  step = int(chief_step)
  assert step >= 20 and rundir.checkpoint_number(
      rundir.checkpoint_files(run_dir / "ckpt")[-1]) == step
  # (Resuming from it is the killed-worker test's: the same restore.)


def _cli(*args, env=None):
  result = subprocess.run([sys.executable, "-m", "seqlvm.cli", *args],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def _records(run_dir):
  """The run's train-split records by file name."""
  return {p.name: json.loads(p.read_text())
          for p in (run_dir / "eval" / "train").glob("*/*.json")}


def test_distributed_eval_gives_one_devices_numbers(vrnn_workers,
                                                    tmp_path):
  """`seqlvm eval` of one checkpoint (the two workers' run) over 2 logical
  CPUs and over two TF_CONFIG workers: every sequence's bound and
  diagnostics are one device's. 12 sequences in batches of 5 (the buckets
  make 3 batches), so the second round holds one batch and one empty
  filler."""
  run_dir = vrnn_workers[2]
  evaluate = ["eval", str(run_dir), "--split", "train", "--batch-size", "5",
              "--num-particles", "3", "--seeds", "2", "--no-progress"]
  _cli(*evaluate)
  single = _records(run_dir)
  assert len(single) == 6  # 3 bounds x 2 seeds.
  _cli(*evaluate, "--force", "--distribute", "mirrored", "--devices", "2")
  mirrored = _records(run_dir)

  # Two workers: seed 0's records are there (reused by both, agreed), seed
  # 1's are computed by both and written by the chief only.
  for name in list(single):
    if "seed1" in name:
      next((run_dir / "eval" / "train").glob(f"*/{name}")).unlink()
  private = tmp_path / "tmp"
  private.mkdir()
  started = [_spawn([sys.executable, "-m", "seqlvm.cli", *evaluate,
                     "--distribute", "multi-worker"], config,
                    tmp_path / f"eval-{i}.log", {"TMPDIR": str(private)})
             for i, config in enumerate(_tf_configs())]
  for process, log in started:
    process.wait(timeout=300)
    log.close()
  logs = [(tmp_path / f"eval-{i}.log").read_text() for i in range(2)]
  for process, text in zip((p for p, _ in started), logs):
    assert process.returncode == 0, text[-3000:]
  assert "(3 reused;" in logs[0]
  assert "written by the chief" in logs[1]
  # The worker's records went to a temporary directory, deleted at the end.
  assert not list(private.glob("seqlvm-eval-*"))
  workers = _records(run_dir)

  assert sorted(mirrored) == sorted(workers) == sorted(single)
  for name, expected in single.items():
    for got in (mirrored[name], workers[name]):
      assert got["num_sequences"] == expected["num_sequences"] == 12
      np.testing.assert_allclose(got["values"], expected["values"],
                                 rtol=1e-6)
      assert got["lengths"] == expected["lengths"]
      np.testing.assert_allclose(got["ll_per_t"], expected["ll_per_t"],
                                 rtol=1e-6)
      for key, values in expected["diagnostics"].items():
        np.testing.assert_allclose(got["diagnostics"][key], values,
                                   rtol=1e-6, atol=1e-7)


def test_replica_seeds():
  """One replica keeps the plain seed (--devices 1 draws like one device);
  with more, each replica's seed is its own."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from seqlvm.run import distribute  # pylint: disable=g-import-not-at-top
  seed = tf.constant([5, 7], tf.int32)
  assert distribute.replica_seed(seed, 0, 1) is seed
  seeds = [tuple(distribute.replica_seed(seed, r, 4).numpy())
           for r in range(4)]
  assert len(set(seeds)) == 4 and (5, 7) not in seeds


def test_tf_config_mistakes_get_one_message(monkeypatch):
  from seqlvm.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from seqlvm.run import distribute  # pylint: disable=g-import-not-at-top
  for text, message in (
      ("", "needs the TF_CONFIG environment variable"),
      ("{", "expected a JSON object"),
      ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}',
       "task type 'ps'"),
      ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", '
       '"index": 3}}', "task index 3 is not in")):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ConfigError, match=message):
      distribute.make_strategy("multi-worker")


def test_workers_that_restore_different_steps_stop_with_one_message(
    vrnn_workers, tmp_path):
  """A run directory that is not shared: worker 0 sees the run at step 3,
  worker 1 an empty folder. Both stop, each with one message, and nothing
  is trained on mismatched weights."""
  import shutil  # pylint: disable=g-import-not-at-top
  _, data, run_dir, _ = vrnn_workers
  seen = [tmp_path / "a", tmp_path / "b"]
  shutil.copytree(run_dir / "ckpt", seen[0] / "ckpt")
  shutil.copy(run_dir / "config.json", seen[0])
  shutil.copy(run_dir / "data.json", seen[0])
  flags = ["--data", data, "--hidden-size", "8", "--latent-size", "4",
           "--batch-size", "4", "--num-steps", "3", "--checkpoint-every",
           "3", "--valid-every", "0", "--valid-samples", "0", "--seed", "5",
           "--no-jit", "--no-progress", "--distribute", "multi-worker"]
  started = [_spawn([sys.executable, "-m", "seqlvm.cli", "train",
                     "--run-dir", str(seen[i]), *flags], config,
                    tmp_path / f"{i}.log")
             for i, config in enumerate(_tf_configs())]
  for process, log in started:
    process.wait(timeout=300)
    log.close()
  for i, (process, _) in enumerate(started):
    text = (tmp_path / f"{i}.log").read_text()
    assert process.returncode != 0, text[-3000:]
    assert "The workers disagree on the step restored" in text, text[-3000:]
    assert "Traceback" not in text
  # The chief's run directory is as it was.
  assert sorted(p.name for p in (seen[0] / "ckpt").glob("ckpt-*.index")) == [
      "ckpt-3.index"]
