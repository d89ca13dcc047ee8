"""`seqlvm data fetch`: downloads from a local HTTP server on 127.0.0.1.

Nothing here reaches beyond loopback: every download names a local URL.
"""

import contextlib
import functools
import http.server
import os
import pickle
import re
import threading

import numpy as np
import pytest

from seqlvm import cli
from seqlvm import data
from seqlvm.data.prepare import fetch
from seqlvm.data import registry
from tests.conftest import SHARED_PIANOROLLS

# The manifest's names and the files in ../shared/data/pianorolls.
SHARED_FILES = {"jsb": "jsb.pkl", "nottingham": "nottingham.pkl",
                "musedata": "musedata.pkl", "piano-midi": "piano-midi.de.pkl"}

needs_shared = pytest.mark.skipif(
    not os.path.isdir(SHARED_PIANOROLLS),
    reason="../shared/data/pianorolls is not beside the repository")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
  # Loopback only: a proxy from the environment must not take the requests.
  for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
               "all_proxy", "ALL_PROXY"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class _Quiet(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


@contextlib.contextmanager
def _serve(directory):
  handler = functools.partial(_Quiet, directory=str(directory))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}"
  finally:
    server.shutdown()
    server.server_close()


@pytest.fixture(name="shared_server", scope="module")
def _shared_server():
  if not os.path.isdir(SHARED_PIANOROLLS):
    pytest.skip("../shared/data/pianorolls is not beside the repository")
  with _serve(SHARED_PIANOROLLS) as url:
    yield url


@needs_shared
@pytest.mark.parametrize("name", sorted(SHARED_FILES))
def test_each_standard_set_downloads_and_verifies(name, shared_server,
                                                  tmp_path):
  path = fetch.fetch(name, source=f"{shared_server}/{SHARED_FILES[name]}",
                     directory=str(tmp_path), progress=False,
                     log=lambda m: None)
  assert path == str(tmp_path / f"{name}.pkl")
  mask = os.umask(0)
  os.umask(mask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
  rolls = data.load_pianoroll(path)
  entry = fetch.load_manifest()[name]
  assert {s: len(rolls.split(s)) for s in data.SPLITS} == entry["splits"]
  assert max(len(r) for s in data.SPLITS for r in rolls.split(s)) == (
      entry["max_length"])
  assert fetch.content_sha256(rolls) == entry["content_sha256"]
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".download")]


@needs_shared
def test_a_mirror_in_another_pickle_layout_passes(tmp_path):
  with open(os.path.join(SHARED_PIANOROLLS, "jsb.pkl"), "rb") as f:
    raw = pickle.load(f, encoding="latin1")
  # Tuples of reversed Python ints, and a tuple for each split.
  mirror = {k: tuple([tuple(int(n) for n in reversed(sorted(step)))
                      for step in seq] for seq in v) for k, v in raw.items()}
  mirror_dir = tmp_path / "mirror"
  mirror_dir.mkdir()
  with open(mirror_dir / "JSB Chorales.pickle", "wb") as f:
    pickle.dump({k: list(v) for k, v in mirror.items()}, f, protocol=2)
  with _serve(mirror_dir) as url:
    path = fetch.fetch("jsb", source=f"{url}/JSB%20Chorales.pickle",
                       directory=str(tmp_path / "d"), progress=False,
                       log=lambda m: None)
  assert os.path.exists(path)


@needs_shared
def test_a_changed_file_is_refused_naming_both_checksums(tmp_path):
  with open(os.path.join(SHARED_PIANOROLLS, "jsb.pkl"), "rb") as f:
    raw = pickle.load(f, encoding="latin1")
  raw["test"][3][5] = list(raw["test"][3][5])[:-1]  # one note less
  served = tmp_path / "served"
  served.mkdir()
  with open(served / "jsb.pkl", "wb") as f:
    pickle.dump(raw, f)
  expected = fetch.load_manifest()["jsb"]["content_sha256"]
  with _serve(served) as url:
    with pytest.raises(fetch.FetchError) as info:
      fetch.fetch("jsb", source=f"{url}/jsb.pkl",
                  directory=str(tmp_path / "d"), progress=False,
                  log=lambda m: None)
  message = str(info.value)
  actual = fetch.content_sha256(_rolls_of(raw, tmp_path))
  assert expected in message and actual in message and actual != expected
  assert f"{url}/jsb.pkl" in message
  assert not (tmp_path / "d" / "jsb.pkl").exists()
  assert not os.listdir(tmp_path / "d")  # no temporary left behind


def _rolls_of(raw, tmp_path):
  path = tmp_path / "changed.pkl"
  with open(path, "wb") as f:
    pickle.dump(raw, f)
  return data.load_pianoroll(str(path))


def test_download_errors_name_the_address(tmp_path):
  with _serve(tmp_path) as url:
    with pytest.raises(fetch.FetchError, match=f"{url}/nothing.pkl: "
                       "download failed"):
      fetch.fetch("jsb", source=f"{url}/nothing.pkl",
                  directory=str(tmp_path / "d"), progress=False,
                  log=lambda m: None)
  (tmp_path / "junk.pkl").write_bytes(b"<html>not a pickle</html>")
  with pytest.raises(data.DataError, match="junk.pkl: not a readable pickle"):
    fetch.fetch("jsb", source=str(tmp_path / "junk.pkl"),
                directory=str(tmp_path / "d"), progress=False,
                log=lambda m: None)
  with pytest.raises(data.DataError, match="Unknown dataset 'bach'"):
    fetch.fetch("bach", directory=str(tmp_path), log=lambda m: None)


@needs_shared
def test_cli_fetch_then_train_by_name(shared_server, tmp_path, monkeypatch,
                                      capsys):
  monkeypatch.setenv("SEQLVM_DATA_DIR", str(tmp_path / "data"))
  with pytest.raises(data.DataError, match="seqlvm data fetch jsb"):
    registry.resolve("jsb")
  assert cli.main(["data", "fetch", "jsb", "--from",
                   f"{shared_server}/jsb.pkl", "--no-progress"]) == 0
  assert registry.resolve("jsb") == str(tmp_path / "data" / "jsb.pkl")
  capsys.readouterr()
  assert cli.main(["data", "list"]) == 0
  listing = capsys.readouterr().out
  assert re.search(r"\* jsb\s", listing) and not re.search(
      r"\* nottingham\s", listing)
  # Already there: kept, not fetched again.
  assert cli.main(["data", "fetch", "jsb", "--no-progress"]) == 0
  assert "already there" in capsys.readouterr().err
  # A mismatch exits with status 2 and one message.
  assert cli.main(["data", "fetch", "nottingham", "--from",
                   f"{shared_server}/jsb.pkl", "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "differ from the manifest" in err and "Traceback" not in err
  run_dir = tmp_path / "run"
  assert cli.main(["train", "--data", "jsb", "--run-dir", str(run_dir),
                   "--num-steps", "2", "--hidden-size", "8",
                   "--latent-size", "4", "--valid-every", "0", "--no-jit",
                   "--no-progress"]) == 0
  assert cli.main(["eval", str(run_dir), "--split", "valid", "--bounds",
                   "elbo", "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert "76 sequences" in out and np.isfinite(
      float(out.split("elbo")[-1].split()[1]))
