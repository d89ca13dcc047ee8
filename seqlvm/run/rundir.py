"""The run directory and its rules, written once.

    RUN_DIR/config.json          the complete Config (`seqlvm.config`)
    RUN_DIR/data.json            where the data is and its fingerprint
    RUN_DIR/versions.json        the seqlvm, TensorFlow and TFP versions that
                                 created the run and last trained it
    RUN_DIR/lock                 held while `seqlvm train` writes to the run
    RUN_DIR/ckpt/                tf.train.CheckpointManager checkpoints
    RUN_DIR/train/, RUN_DIR/valid/   TensorBoard summaries
    RUN_DIR/eval/SPLIT_nN.json   results of `seqlvm eval`
    RUN_DIR/samples/             output of `seqlvm sample` (by default)

`RunDir` names these files and does what concerns them: the config and its
resume check, the data record, the versions, the checkpoint manager and the
restore of the newest checkpoint that loads. Checkpoints hold the model, the
optimizer, the step and the input iterator, so a resumed run continues
exactly where it stopped. TensorFlow writes each checkpoint to temporary
files and only then updates the index atomically, so a run killed while
saving keeps its previous checkpoint; a checkpoint that fails to restore is
reported by name and the next older one is used.

- **One writer.** Training holds an advisory lock on RUN_DIR/lock (an
  `fcntl.flock`, which the operating system releases when the process ends,
  even on kill -9) and writes its pid, host and start time into it. A second
  training of the same run is refused with a message naming the holder. A
  lock file left behind by a process that has died is stale: the next
  training takes it over and says so. `eval` and `sample` only read the
  checkpoints and write their own files atomically, so they may run while a
  training writes (to evaluate its progress).
- **The data.** A run records its data as a dataset name (`chorales`, `jsb`,
  a NAME in the data directory) or an absolute path, so it resolves from any
  folder, with the data's fingerprint; `train` (on resume), `eval` and
  `sample` refuse data whose fingerprint differs, naming both.
- **Checkpoints.** Every ckpt-N in RUN_DIR/ckpt counts against
  --keep-checkpoints, also those a lost or rebuilt index no longer names.
  With --keep-every K, the model of every step divisible by K is also kept
  in RUN_DIR/kept (KEPT_DIR), never pruned.
"""

import datetime
import errno
import glob
import json
import os
import socket
import time

from seqlvm import config as config_lib
from seqlvm import fileio
from seqlvm.errors import CheckpointError
from seqlvm.errors import ConfigError
from seqlvm.errors import DataMismatchError
from seqlvm.errors import RunLockedError

__all__ = ["RunDir", "RunLock", "RunLockedError", "DataMismatchError",
           "LOCK_NAME", "CONFIG_NAME", "DATA_RECORD", "VERSIONS_RECORD",
           "KEPT_DIR",
           "read_record", "pipeline_id", "data_record", "check_data",
           "checkpoint_number", "checkpoint_files",
           "remove_checkpoints_after", "adopt_checkpoints",
           "restore_latest", "versions"]

LOCK_NAME = "lock"
CONFIG_NAME = "config.json"
DATA_RECORD = "data.json"
VERSIONS_RECORD = "versions.json"
KEPT_DIR = "kept"


def read_record(path):
  """A JSON object from `path`, or {} if it is missing or unreadable."""
  try:
    with open(path) as f:
      values = json.load(f)
    return values if isinstance(values, dict) else {}
  except (OSError, ValueError):
    return {}


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class RunLock:
  """The advisory lock that makes training the only writer of a run.

  Use as a context manager, or `acquire()` / `release()`.

  Args:
    run_dir: the run directory (made if missing).
    log: called with a message when a stale lock is taken over.
  """

  def __init__(self, run_dir, log=None):
    self.path = os.path.join(os.fspath(run_dir), LOCK_NAME)
    self._log = log or (lambda message: None)
    self._fd = None

  def _holder(self):
    holder = read_record(self.path)
    if not holder:
      return "another process"
    return (f"pid {holder.get('pid')} on host {holder.get('host')!r} "
            f"(since {holder.get('started')})")

  def _take_over_if_stale(self):
    """Without flock (a filesystem that lacks it): a lock file whose holder
    is a dead process on this host is stale; any other is respected."""
    holder = read_record(self.path)
    if not holder:
      return
    same_host = holder.get("host") == socket.gethostname()
    pid = holder.get("pid")
    if same_host and isinstance(pid, int) and not _pid_alive(pid):
      return
    raise RunLockedError(
        f"{self.path}: this run is being trained by {self._holder()}. Wait "
        "for it to finish, or remove the lock file if that process is gone.")

  def acquire(self):
    """Takes the lock, or raises RunLockedError naming its holder.

    Raises:
      RunLockedError: if another process holds it.
      WriteError: if the lock file cannot be written.
    """
    import fcntl  # pylint: disable=g-import-not-at-top
    fileio.make_dirs(os.path.dirname(self.path), "run directory")
    while True:
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      except OSError as e:
        raise fileio.WriteError(f"{self.path}: cannot write the run's lock "
                                f"file ({e.strerror}).") from e
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        raise RunLockedError(  # pylint: disable=raise-missing-from
            f"{os.path.dirname(self.path)}: this run is being trained by "
            f"{self._holder()}; a run directory has one writer. Wait for it "
            "to finish or stop it, or train into another --run-dir.")
      except OSError as e:
        try:
          if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
          self._take_over_if_stale()
        except BaseException:
          os.close(fd)
          raise
      # The file may have been removed (released) between open and flock:
      # then this lock is on an unlinked file; try again on the new one.
      try:
        if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
          break
      except FileNotFoundError:
        pass
      os.close(fd)
    stale = read_record(self.path)
    if stale:
      self._log(f"Warning: {self.path}: took over a stale lock of pid "
                f"{stale.get('pid')} on host {stale.get('host')!r} (that "
                "training ended without releasing it).")
    record = json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds")})
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, (record + "\n").encode("utf-8"), 0)
      os.fsync(fd)
    except OSError as e:
      os.close(fd)
      raise fileio.WriteError(f"{self.path}: cannot write the run's lock "
                              f"file ({e.strerror}).") from e
    self._fd = fd
    return self

  def release(self):
    if self._fd is None:
      return
    try:
      os.remove(self.path)
    except OSError:
      pass
    os.close(self._fd)  # Closing releases the flock.
    self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc_info):
    self.release()


def pipeline_id(source):
  """The name of the source's input pipeline (checkpoints hold its state)."""
  return source.pipeline_id or type(source).__name__


def data_record(source, data):
  """What a run stores about its data in RUN_DIR/data.json: `data` (the
  config's: a dataset name or an absolute path), "path" (the file or folder
  it resolved to, absolute), "source", "pipeline" and "fingerprint"."""
  name = source.name
  record = {"data": data, "source": name,
            "pipeline": pipeline_id(source),
            "fingerprint": source.fingerprint()}
  if name and os.path.exists(name):
    record["path"] = os.path.abspath(name)
  return record


def check_data(run_dir, current, purpose):
  """Refuses data whose fingerprint differs from the run's record.

  Args:
    run_dir: the run directory.
    current: `data_record(...)` of the data about to be used.
    purpose: what it is for ("resume", "evaluate", "sample"), for messages.

  Returns:
    stored: the record found (empty for a new run or a run older than it).

  Raises:
    DataMismatchError: naming both datasets and fingerprints.
  """
  path = os.path.join(run_dir, DATA_RECORD)
  stored = read_record(path)
  if stored.get("fingerprint") and current.get("fingerprint") and (
      stored["fingerprint"] != current["fingerprint"]):
    trained_on = stored.get("path") or stored.get("data") or stored.get(
        "source")
    now = current.get("path") or current.get("data") or current.get("source")
    hint = ("train a new run (another --run-dir) on it" if purpose == "resume"
            else f"{purpose} with the run's own data")
    raise DataMismatchError(
        f"{path}: this run was trained on {trained_on!r} with fingerprint "
        f"{stored['fingerprint'][:16]}...; {now!r} has fingerprint "
        f"{current['fingerprint'][:16]}.... The data changed; {hint}.")
  return stored


def checkpoint_number(prefix):
  """N of ".../ckpt-N", or -1."""
  try:
    return int(os.fspath(prefix).rsplit("-", 1)[1])
  except (IndexError, ValueError):
    return -1


def checkpoint_files(directory):
  """Every ckpt-N in `directory` (by its .index file), as absolute
  prefixes, oldest first."""
  return sorted((os.path.abspath(f[:-len(".index")]) for f in
                 glob.glob(os.path.join(directory, "ckpt-*.index"))),
                key=checkpoint_number)


def remove_checkpoints_after(directory, step):
  """Removes every ckpt-N of `directory` with N > `step` (all its files);
  the prefixes removed, oldest first. A resumed run drops what it saved
  after the step it resumes from, which it trains (and saves) again."""
  later = [p for p in checkpoint_files(directory)
           if checkpoint_number(p) > step]
  for prefix in later:
    for path in glob.glob(prefix + ".*"):
      os.remove(path)
  return later


def adopt_checkpoints(directory):
  """Lists in the index every ckpt-N of `directory` older than its newest
  listed one (or all, when the index is lost) that the index does not name,
  so that `tf.train.CheckpointManager` counts and prunes them again.

  After a lost or damaged index, a resumed run's manager knows only what it
  saves itself, and the older checkpoints on disk would stay forever.

  Returns:
    adopted: the checkpoint prefixes added to the index.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  on_disk = checkpoint_files(directory)
  if not on_disk:
    return []
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (tf.errors.OpError, ValueError):
    state = None
  # get_checkpoint_state has already joined relative entries to
  # `directory`: joining again doubles a relative directory.
  listed = [os.path.abspath(p) for p in (
      state.all_model_checkpoint_paths if state else [])]
  newest = max((checkpoint_number(p) for p in listed), default=None)
  orphans = [p for p in on_disk if p not in listed and (
                 newest is None or checkpoint_number(p) < newest)]
  if not orphans:
    return []
  paths = orphans + listed
  times = [os.path.getmtime(p + ".index") if os.path.exists(p + ".index")
           else time.time() for p in paths]
  # The manager tracks (and so prunes) only checkpoints newer than this.
  preserved = min(times) - 1.
  tf.compat.v1.train.update_checkpoint_state(
      directory, paths[-1], all_model_checkpoint_paths=paths,
      all_model_checkpoint_timestamps=times,
      last_preserved_timestamp=preserved)
  return orphans


def versions():
  """The versions that matter for reproducing a run: {package: version}."""
  import platform  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  import seqlvm  # pylint: disable=g-import-not-at-top
  return {"seqlvm": seqlvm.__version__, "tensorflow": tf.__version__,
          "tensorflow_probability": tfp.__version__,
          "python": platform.python_version()}


class RunDir:
  """A run directory: its files and what concerns them.

  Args:
    path: the run directory.
  """

  def __init__(self, path):
    self.path = os.fspath(path)

  def __fspath__(self):
    return self.path

  def file(self, *parts):
    return os.path.join(self.path, *parts)

  @property
  def config_path(self):
    return self.file(CONFIG_NAME)

  @property
  def ckpt_dir(self):
    return self.file("ckpt")

  @property
  def kept_dir(self):
    return self.file(KEPT_DIR)

  def exists(self):
    """Whether a run was started here (its config is written)."""
    return os.path.exists(self.config_path)

  def load_config(self):
    return config_lib.load_config(self.config_path)

  def save_config(self, config):
    config_lib.save_config(config, self.config_path)

  def check_resume(self, config, canonical):
    """Refuses a config that differs from the stored one in a field that
    may not change on resume.

    Args:
      config: the `Config` asked for.
      canonical: data name or path -> its canonical form (how the stored
        data is compared: an older run may store a relative path).

    Raises:
      ConfigError: naming the differences.
    """
    if not self.exists():
      return
    stored = self.load_config()
    stored = stored.replace(data=canonical(stored.data))
    differences = [
        f"{k}: stored {v!r}, given {getattr(config, k)!r}"
        for k, v in stored.to_dict().items()
        if k not in config_lib.RESUMABLE_FIELDS and getattr(config, k) != v]
    if differences:
      raise ConfigError(
          f"{self.config_path}: this run directory holds a run with another "
          "configuration (" + "; ".join(differences) + "). Resume it with "
          "the same settings or choose a new --run-dir.")

  def check_data(self, source, data, purpose="resume"):
    """Refuses data whose fingerprint differs from data.json's; for
    training, records the data (where it is, fingerprint, pipeline).

    Returns:
      stored: the record found before (empty for a new run or an older one).

    Raises:
      DataMismatchError: naming both, if the data changed.
    """
    current = data_record(source, data)
    stored = check_data(self.path, current, purpose)
    if purpose == "resume" and stored != current:
      fileio.write_json(current, self.file(DATA_RECORD))
    return stored

  def record_versions(self, resuming):
    """Writes versions.json: the versions that created the run (kept; None
    for a run an older seqlvm created without this record) and those that
    trained it last."""
    path = self.file(VERSIONS_RECORD)
    current = versions()
    record = read_record(path)
    created = record["created_with"] if "created_with" in record else (
        None if resuming else current)
    fileio.write_json({"created_with": created,
                       "last_trained_with": current}, path)

  def checkpoint_manager(self, checkpoint, max_to_keep=3):
    """A tf.train.CheckpointManager over RUN_DIR/ckpt.

    Raises:
      CheckpointError: if the checkpoint index is unreadable.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
      return tf.train.CheckpointManager(checkpoint, self.ckpt_dir,
                                        max_to_keep=max_to_keep)
    except (tf.errors.OpError, ValueError) as e:
      raise CheckpointError(
          f"{os.path.join(self.ckpt_dir, 'checkpoint')}: unreadable "
          f"checkpoint index ({type(e).__name__}); move it aside to restore "
          "from a specific checkpoint file.") from e

  def adopt_checkpoints(self, log):
    """Brings checkpoints a lost index forgot back under --keep-checkpoints.

    Raises:
      WriteError: if the index cannot be rebuilt.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    index = os.path.join(self.ckpt_dir, "checkpoint")
    try:
      adopted = adopt_checkpoints(self.ckpt_dir)
    except (tf.errors.OpError, OSError) as e:
      raise fileio.WriteError(f"{index}: cannot rebuild the checkpoint index "
                              f"({e}).") from e
    if adopted:
      names = ", ".join(os.path.basename(p) for p in adopted)
      log(f"Warning: {index} is missing or unreadable, or did not list "
          f"{names}; listed {'them' if len(adopted) > 1 else 'it'} again, so "
          "they count against --keep-checkpoints.")


def restore_latest(checkpoint, manager, partial=False, log=None):
  """Restores the newest checkpoint that loads; returns its path or None.

  The candidates are the checkpoints the index names, newest first, then any
  other ckpt-N files in the directory, newest first (the index may be lost or
  damaged: TensorFlow then reports no checkpoints).

  Raises:
    CheckpointError: naming every file tried, if none restores.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  listed = [os.path.abspath(p) for p in reversed(manager.checkpoints)]
  others = [f for f in reversed(checkpoint_files(manager.directory))
            if f not in listed]
  if not listed and others and log:
    log(f"Warning: {os.path.join(manager.directory, 'checkpoint')} is "
        "missing or unreadable; trying the checkpoint files themselves.")
  failures = []
  for path in listed + others:
    try:
      status = checkpoint.restore(path)
      if partial:
        status.expect_partial()
      else:
        status.assert_existing_objects_matched()
      if failures and log:
        log(f"Restored the older checkpoint {path} instead.")
      return path
    except (tf.errors.OpError, ValueError, AssertionError, IndexError,
            KeyError, OSError) as e:
      failures.append(f"{path}: {type(e).__name__}: {str(e).splitlines()[0]}")
      if log:
        log(f"Warning: checkpoint {path} could not be restored "
            f"({type(e).__name__}); trying an older one.")
  if failures:
    raise CheckpointError("No checkpoint could be restored:\n  " +
                          "\n  ".join(failures))
  return None
