"""Downloading the four standard pianoroll sets, checked against a manifest.

`seqlvm data fetch NAME` downloads a Boulanger-Lewandowski et al. (ICML 2012)
pickle from its public home (or `--from` a local copy or a mirror), decodes
it, and compares a checksum of its decoded content with the one recorded in
the manifest (data/pianorolls.json). Only a file that matches is stored, as
NAME.pkl in the data directory, where `--data NAME` finds it.

The checksum covers the content, not the bytes: the original pickles and a
mirror in another pickle layout (lists or tuples, numpy or Python integers,
sorted or unsorted notes) decode to the same rolls and pass alike.
"""

import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from seqlvm import fileio
from seqlvm.data.prepare import chorales
from seqlvm.data.formats import pianoroll
from seqlvm.errors import FetchError

__all__ = ["MANIFEST", "load_manifest", "content_sha256", "fetch",
           "FetchError"]

# seqlvm/data/pianorolls.json (a link to the repository's data/).
MANIFEST = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "pianorolls.json")
_TIMEOUT_S = 60


def load_manifest(path=MANIFEST):
  """The manifest's sets: dict name -> {url, content_sha256, splits, ...}."""
  try:
    with open(path) as f:
      return json.load(f)["sets"]
  except (OSError, ValueError, KeyError) as e:
    raise pianoroll.DataError(f"{path}: unreadable dataset manifest "
                              f"({type(e).__name__}: {e}).") from e


def content_sha256(rolls):
  """The checksum of a set's decoded content (see data/pianorolls.json).

  Args:
    rolls: a `Pianorolls` (or anything with `.split(name)` giving lists of
      binary `[T, 88]` arrays).

  Returns:
    hex digest: sha256 over each split (train, valid, test): the text
    "<split> <count>\\n", then per sequence its length as a little-endian
    uint32 and its binary roll packed row-major with numpy.packbits.
  """
  h = hashlib.sha256()
  for name in pianoroll.SPLITS:
    sequences = rolls.split(name)
    h.update(f"{name} {len(sequences)}\n".encode("ascii"))
    for roll in sequences:
      binary = np.asarray(roll) > 0.5
      h.update(np.asarray(len(binary), "<u4").tobytes())
      h.update(np.packbits(binary, axis=None).tobytes())
  return h.hexdigest()


def _is_url(source):
  return urllib.parse.urlparse(source).scheme in ("http", "https", "file",
                                                  "ftp")


def _download(url, destination, progress):
  """Streams `url` to the open binary file `destination`."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  try:
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
      total = response.headers.get("Content-Length")
      with tqdm(total=int(total) if total else None, unit="B",
                unit_scale=True, desc=os.path.basename(
                    urllib.parse.unquote(urllib.parse.urlparse(url).path)),
                disable=not progress, file=sys.stderr) as bar:
        while True:
          chunk = response.read(1 << 16)
          if not chunk:
            break
          destination.write(chunk)
          bar.update(len(chunk))
  except (urllib.error.URLError, http.client.HTTPException, OSError,
          ValueError) as e:
    reason = getattr(e, "reason", None) or repr(e)
    raise FetchError(f"{url}: download failed ({reason}). Check the "
                     "address, or pass --from PATH to a local copy.") from e


def fetch(name, source=None, directory=None, force=False, progress=True,
          log=None, manifest=MANIFEST):
  """Downloads (or copies) a standard set, verifies it and stores it.

  Args:
    name: one of the manifest's sets (jsb, nottingham, musedata, piano-midi).
    source: optional local path or URL to take the file from instead of the
      manifest's address (a local copy or a mirror).
    directory: where to store NAME.pkl. Default value: the data directory.
    force: download again even if NAME.pkl is already there (an existing
      file is kept as it is otherwise, without checking it again).
    progress: show a progress bar. Default value: True.
    log: callable for messages. Default value: print to stderr.
    manifest: the manifest file. Default value: data/pianorolls.json.

  Returns:
    path: the stored pickle.

  Raises:
    FetchError: the download failed, or the content checksum (or the split
      sizes) differ from the manifest; both values are named and nothing is
      stored.
    DataError: the file is not a valid pianoroll pickle (named).
  """
  log = log or (lambda message: print(message, file=sys.stderr))
  sets = load_manifest(manifest)
  if name not in sets:
    raise pianoroll.DataError(f"Unknown dataset {name!r}; choose one of "
                              f"{', '.join(sorted(sets))}.")
  entry = sets[name]
  directory = directory or chorales.data_dir()
  target = os.path.join(directory, f"{name}.pkl")
  if os.path.exists(target) and not force:
    log(f"{target} is already there (use --force to fetch it again).")
    return target
  source = source or entry["url"]
  try:
    os.makedirs(directory, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{name}.",
                                      suffix=".download", delete=False)
  except OSError as e:
    raise FetchError(f"{directory}: cannot write here ({e.strerror or e})."
                     ) from e
  try:
    with tmp:
      if _is_url(source):
        log(f"Downloading {name} from {source}")
        _download(source, tmp, progress)
      else:
        if not os.path.isfile(source):
          raise FetchError(f"{source}: no such file.")
        log(f"Copying {name} from {source}")
        try:
          with open(source, "rb") as f:
            shutil.copyfileobj(f, tmp)
        except OSError as e:
          raise FetchError(f"{source}: copying to {directory} failed "
                           f"({e.strerror or e}).") from e
    rolls = _load_download(tmp.name, source)
    _verify(name, entry, rolls, source)
    fileio.publish(tmp.name, target)
  finally:
    if os.path.exists(tmp.name):
      os.unlink(tmp.name)
  sizes = "/".join(str(len(rolls.split(s))) for s in pianoroll.SPLITS)
  log(f"{name}: verified (content sha256 {entry['content_sha256'][:16]}..., "
      f"{sizes} sequences); stored {target}. Train with --data {name}.")
  return target


def _load_download(path, source):
  try:
    return pianoroll.load_pianoroll(path)
  except pianoroll.DataError as e:
    # Name the source the user gave, not the temporary file.
    raise pianoroll.DataError(str(e).replace(path, source, 1)) from e


def _verify(name, entry, rolls, source):
  sizes = {s: len(rolls.split(s)) for s in pianoroll.SPLITS}
  expected_sizes = entry.get("splits")
  if expected_sizes and sizes != expected_sizes:
    raise FetchError(
        f"{source}: the split sizes {sizes} differ from the manifest's "
        f"{expected_sizes} for {name!r}; refusing it.")
  actual = content_sha256(rolls)
  if actual != entry["content_sha256"]:
    raise FetchError(
        f"{source}: content checksum mismatch for {name!r}: expected "
        f"sha256 {entry['content_sha256']}, got {actual}. Refusing the "
        "file; nothing was stored.")
