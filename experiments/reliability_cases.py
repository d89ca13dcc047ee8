"""The hostile new user's cases, run through the command line: a table.

    python experiments/reliability_cases.py > /tmp/cases.md

Each row: the case, the command, its exit status, the first line of its
error (or of its output), and whether the run kept its work (checkpoints
and data unchanged). tests/test_run_reliability.py asserts each of these;
this script shows them side by side for the closing note.
"""

import contextlib
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqlvm import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from seqlvm.run import rundir  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.conftest import write_tiny_pianorolls  # pylint: disable=g-import-not-at-top,wrong-import-position

SMALL = ["--hidden-size", "8", "--latent-size", "4", "--no-jit",
         "--no-progress", "--valid-every", "0"]
ROWS = []


def run(case, args, cwd=None, shown=None):
  """cli.main(args); records (case, command, status, message)."""
  out, err = io.StringIO(), io.StringIO()
  old = os.getcwd()
  try:
    if cwd:
      os.chdir(cwd)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      status = cli.main([str(a) for a in args])
  finally:
    os.chdir(old)
  lines = [l for l in err.getvalue().splitlines() if "error:" in l or (
      "Warning" in l)] or out.getvalue().splitlines()[:1]
  message = " / ".join(lines)[:400] if shown is None else shown(
      out.getvalue(), err.getvalue())
  ROWS.append([case, " ".join(str(a) for a in args[:3]) + " ...", status,
               message])
  return status


def train(data, run_dir, *extra, **kwargs):
  return ["train", "--data", data, "--run-dir", run_dir] + SMALL + list(extra)


def ckpts(run_dir):
  return [rundir.checkpoint_number(p) for p in
          rundir.checkpoint_files(os.path.join(run_dir, "ckpt"))]


def fresh_run(root, name):
  """A run of 4 steps (checkpoints 2 and 4) trained from `root`."""
  data = os.path.join(root, name + ".pkl")
  write_tiny_pianorolls(data)
  run_dir = os.path.join(root, name)
  with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(
      io.StringIO()):
    assert cli.main(train(data, run_dir, "--num-steps", "4",
                          "--checkpoint-every", "2")) == 0
  return data, run_dir


@contextlib.contextmanager
def read_only(path):
  """The folder and everything in it read-only, also for root."""
  root = os.geteuid() == 0
  subprocess.run(["chattr", "-R", "+i", path] if root else
                 ["chmod", "-R", "a-w", path], check=True)
  try:
    yield
  finally:
    subprocess.run(["chattr", "-R", "-i", path] if root else
                   ["chmod", "-R", "u+w", path], check=True)


def main():
  root = tempfile.mkdtemp(prefix="seqlvm-cases-")
  data, run_dir = fresh_run(root, "a")
  other = os.path.join(root, "elsewhere")
  os.makedirs(other)
  write_tiny_pianorolls(os.path.join(other, "a.pkl"), seed=5)
  run("1 eval from another folder with its own a.pkl", [
      "eval", run_dir, "--bounds", "elbo", "--no-progress"], cwd=other)
  saved = open(data, "rb").read()
  shutil.copy(os.path.join(other, "a.pkl"), data)
  run("1 eval after the run's data changed",
      ["eval", run_dir, "--no-progress"])
  run("1 sample after the run's data changed",
      ["sample", run_dir, "--no-progress"])
  open(data, "wb").write(saved)
  with read_only(run_dir):
    run("2 eval, read-only run directory",
        ["eval", run_dir, "--bounds", "elbo", "--no-progress"],
        shown=lambda out, err: (out.splitlines()[-1] + " / " + [
            l for l in err.splitlines() if "error" in l][0]))
    run("2 sample, read-only run directory",
        ["sample", run_dir, "--no-progress"])
    run("2 resume, read-only run directory",
        train(data, run_dir, "--num-steps", "6"))
  parent = os.path.join(root, "ro")
  os.makedirs(parent)
  with read_only(parent):
    run("2 train under a read-only parent",
        train(data, os.path.join(parent, "new"), "--num-steps", "1"))
  not_dir = os.path.join(root, "file.txt")
  open(not_dir, "w").write("mine")
  run("2 sample --out an existing file",
      ["sample", run_dir, "--out", not_dir, "--no-progress"])
  config = os.path.join(run_dir, "config.json")
  good = open(config).read()
  open(config, "w").write("{}")
  run("3 eval with config.json {}", ["eval", run_dir, "--no-progress"])
  open(config, "w").write('{"data": ')
  run("3 eval with a garbage config.json",
      ["eval", run_dir, "--no-progress"])
  open(config, "w").write(good)
  with rundir.RunLock(run_dir):
    run("4 a second training while one holds the run",
        train(data, run_dir, "--num-steps", "6"))
  open(os.path.join(run_dir, "lock"), "w").write(json.dumps(
      {"pid": 999999999, "host": "gone", "started": "earlier"}))
  run("4 resume after a kill -9 left the lock file",
      train(data, run_dir, "--num-steps", "6"))
  run("5 --num-steps 0", train(data, os.path.join(root, "z"),
                               "--num-steps", "0"))
  run("5 resume at --num-steps", train(data, run_dir, "--num-steps", "6"))
  run("5 resume past --num-steps", train(data, run_dir, "--num-steps", "3"))
  run("5 --max-minutes -1",
      train(data, run_dir, "--num-steps", "8", "--max-minutes", "-1"))
  empty = os.path.join(root, "empty.pkl")
  write_tiny_pianorolls(empty)
  splits = pickle.load(open(empty, "rb"))
  splits["test"].insert(2, [])
  pickle.dump(splits, open(empty, "wb"))
  run("6 a sequence with no timesteps",
      train(empty, os.path.join(root, "e"), "--num-steps", "1"))
  run("7 train to 10, keep 3",
      train(data, run_dir, "--num-steps", "10", "--checkpoint-every", "2",
            "--keep-checkpoints", "3"))
  os.remove(os.path.join(run_dir, "ckpt", "checkpoint"))
  run("7 index deleted, resume to 14, keep 3",
      train(data, run_dir, "--num-steps", "14", "--checkpoint-every", "2",
            "--keep-checkpoints", "3"),
      shown=lambda out, err: f"checkpoints left: {ckpts(run_dir)}")
  run("9 sample --num 3, then --num 1",
      ["sample", run_dir, "--num", "3", "--no-progress"],
      shown=lambda out, err: "")
  run("9 sample --num 3, then --num 1",
      ["sample", run_dir, "--num", "1", "--no-progress"],
      shown=lambda out, err: "files left: " + ", ".join(sorted(os.listdir(
          os.path.join(run_dir, "samples")))))
  ROWS.pop(-2)
  run("9 sample --steps 100000 --max-minutes 0.1",
      ["sample", run_dir, "--steps", "100000", "--max-minutes", "0.1",
       "--no-progress", "--out", os.path.join(root, "long")])
  run("10 --bound iwae --resampling always",
      train(data, os.path.join(root, "i"), "--num-steps", "1", "--bound",
            "iwae", "--resampling", "always"))
  run("10 --batch-size larger than the training set",
      train(data, os.path.join(root, "b"), "--num-steps", "1",
            "--batch-size", "13"))
  one = os.path.join(root, "one")
  os.makedirs(one)
  open(os.path.join(one, "song.mid"), "w").write("not MIDI")
  run("11 from-midi, one non-MIDI .mid", [
      "data", "from-midi", one, "--out", os.path.join(root, "x.pkl"),
      "--no-progress"],
      shown=lambda out, err: " / ".join(err.strip().splitlines()[:3]))
  others = os.path.join(root, "others")
  os.makedirs(others)
  for name in ("a.txt", "b.wav"):
    open(os.path.join(others, name), "w").write("x")
  run("11 from-midi, only non-MIDI files", [
      "data", "from-midi", others, "--out", os.path.join(root, "x.pkl"),
      "--no-progress"])
  run("11 --data a folder that is not prepared",
      train(others, os.path.join(root, "f"), "--num-steps", "1"))
  run("regression: NaN at --learning-rate 1000",
      train(data, os.path.join(root, "nan"), "--num-steps", "20",
            "--learning-rate", "1000"))
  print("| case | command | exit | message |")
  print("|---|---|---|---|")
  for case, command, status, message in ROWS:
    message = message.replace(root, "$TMP").replace("|", "\\|")
    message = message.replace(f"pid {os.getpid()} on host "
                              f"{socket.gethostname()!r}", "pid PID on host "
                              "'HOST'")
    command = command.replace(root, "$TMP")
    print(f"| {case} | `{command}` | {status} | {message} |")
  shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
