"""The run directory's lock, data record and checkpoint adoption."""

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys

import pytest

from seqlvm.run import rundir
from seqlvm.data import registry


def _dead_pid():
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_lock_is_exclusive_and_released(tmp_path):
  with rundir.RunLock(tmp_path / "run") as lock:
    record = json.loads((tmp_path / "run" / "lock").read_text())
    assert record["pid"] == os.getpid()
    assert record["host"] == socket.gethostname()
    with pytest.raises(rundir.RunLockedError, match=(
        f"being trained by pid {os.getpid()} on host")):
      rundir.RunLock(tmp_path / "run").acquire()
    assert lock.path == str(tmp_path / "run" / "lock")
  assert not (tmp_path / "run" / "lock").exists()
  rundir.RunLock(tmp_path / "run").acquire().release()  # free again


def test_a_stale_lock_file_is_taken_over(tmp_path):
  (tmp_path / "lock").write_text(json.dumps(
      {"pid": 123456789, "host": "gone", "started": "yesterday"}))
  messages = []
  with rundir.RunLock(tmp_path, log=messages.append):
    assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
  assert any("took over a stale lock of pid 123456789 on host 'gone'" in m
             for m in messages), messages


def test_without_flock_a_live_holder_on_this_host_is_respected(
    tmp_path, monkeypatch):
  def no_flock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")

  monkeypatch.setattr(fcntl, "flock", no_flock)
  host = socket.gethostname()
  (tmp_path / "lock").write_text(json.dumps({"pid": os.getpid(),
                                             "host": host}))
  with pytest.raises(rundir.RunLockedError, match="remove the lock file"):
    rundir.RunLock(tmp_path).acquire()
  (tmp_path / "lock").write_text(json.dumps({"pid": _dead_pid(),
                                             "host": host}))
  messages = []
  rundir.RunLock(tmp_path, log=messages.append).acquire().release()
  assert any("stale lock" in m for m in messages)


def test_data_check_names_both(tmp_path):
  stored = {"data": "/a/tiny.pkl", "path": "/a/tiny.pkl", "fingerprint":
            "1" * 64}
  (tmp_path / "data.json").write_text(json.dumps(stored))
  assert rundir.check_data(str(tmp_path), dict(stored), "evaluate") == stored
  changed = {"data": "/b/tiny.pkl", "path": "/b/tiny.pkl",
             "fingerprint": "2" * 64}
  with pytest.raises(rundir.DataMismatchError) as info:
    rundir.check_data(str(tmp_path), changed, "evaluate")
  message = str(info.value)
  assert "'/a/tiny.pkl' with fingerprint 1111111111111111" in message
  assert "'/b/tiny.pkl' has fingerprint 2222222222222222" in message
  assert "evaluate with the run's own data" in message
  assert rundir.check_data(str(tmp_path / "none"), changed, "sample") == {}


def test_canonical_data(tmp_path, monkeypatch):
  monkeypatch.setenv("SEQLVM_DATA_DIR", str(tmp_path / "data"))
  (tmp_path / "data").mkdir()
  (tmp_path / "data" / "mine.pkl").write_bytes(b"")
  (tmp_path / "here.pkl").write_bytes(b"")
  monkeypatch.chdir(tmp_path)
  assert registry.canonical("chorales") == "chorales"
  assert registry.canonical("jsb") == "jsb"
  assert registry.canonical("mine") == "mine"  # a name in the data dir
  assert registry.canonical("here.pkl") == str(tmp_path / "here.pkl")
  assert registry.canonical("./here.pkl") == str(tmp_path / "here.pkl")
  assert registry.canonical("missing.pkl") == "missing.pkl"


def test_checkpoint_number():
  assert rundir.checkpoint_number("/x/ckpt-12") == 12
  assert rundir.checkpoint_number("/x/ckpt") == -1


def test_versions_record_the_creator_and_the_last_trainer(tmp_path):
  current = rundir.versions()
  assert set(current) == {"seqlvm", "tensorflow", "tensorflow_probability",
                          "python"}
  new = rundir.RunDir(tmp_path / "new")
  os.makedirs(new.path)
  new.record_versions(resuming=False)
  record = rundir.read_record(new.file(rundir.VERSIONS_RECORD))
  assert record == {"created_with": current, "last_trained_with": current}
  # A run an older seqlvm made has no record: its creator is unknown, and
  # stays so when it is resumed again.
  old = rundir.RunDir(tmp_path / "old")
  os.makedirs(old.path)
  for _ in range(2):
    old.record_versions(resuming=True)
    record = rundir.read_record(old.file(rundir.VERSIONS_RECORD))
    assert record == {"created_with": None, "last_trained_with": current}


def test_a_relative_run_directory_resumes_from_its_newest_checkpoint(
    tmp_path, monkeypatch):
  # TensorFlow's get_checkpoint_state already joins the index's relative
  # paths to the directory; joining them again (a relative run directory,
  # as experiments/reproduce_fivo.py passes) adopted every file as an orphan
  # and resumed from an older checkpoint than the newest.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  step = tf.Variable(0)
  checkpoint = tf.train.Checkpoint(step=step)
  manager = tf.train.CheckpointManager(checkpoint, os.path.join("r", "ckpt"),
                                       max_to_keep=3)
  for value in (2, 4, 6):
    step.assign(value)
    manager.save(checkpoint_number=value)
  index = tmp_path / "r" / "ckpt" / "checkpoint"
  before = index.read_text()
  assert rundir.adopt_checkpoints(os.path.join("r", "ckpt")) == []
  assert index.read_text() == before
  step.assign(0)
  manager = tf.train.CheckpointManager(checkpoint, os.path.join("r", "ckpt"),
                                       max_to_keep=3)
  messages = []
  path = rundir.restore_latest(checkpoint, manager, log=messages.append)
  assert path == str(tmp_path / "r" / "ckpt" / "ckpt-6") and int(step) == 6
  assert not messages, messages
  # A lost index still brings the files back, under their real names.
  os.remove(index)
  adopted = rundir.adopt_checkpoints(os.path.join("r", "ckpt"))
  assert adopted == [str(tmp_path / "r" / "ckpt" / f"ckpt-{n}")
                     for n in (2, 4, 6)]
  assert "/r/ckpt/r/ckpt" not in index.read_text()
