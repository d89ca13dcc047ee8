"""The embedded speech default: English sentences spoken by espeak-ng.

For a fresh machine with no corpus (TIMIT is licensed), the demo set is made
on the spot: 72 short sentences in the style of the Harvard sentences
(written for this module), each spoken by six espeak-ng voices (American,
British, Scottish, Caribbean, and two female variants) at a speed and pitch
drawn per sentence and voice from a fixed seed. The recordings go to a
temporary folder laid out train/ valid/ test/ and through
`from_audio.from_audio(..., sample_rate=16000, frame_size=200)`.

The split is by sentence, so valid and test sentences are never heard in
training: sentence i goes to 'valid' if i % 9 == 7, to 'test' if i % 9 == 8,
else to 'train' (56 / 8 / 8 sentences, 336 / 48 / 48 utterances). The
prepared folder is cached in the data directory (`chorales.data_dir()`) and
reused on later runs.

espeak-ng's output differs slightly between its versions, so two machines
may prepare slightly different sets; the sentences, voices and split do not
change.

Recommended import: `from seqlvm.data.prepare import speech_demo`.
"""

import concurrent.futures
import functools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from seqlvm import fileio
from seqlvm.data.prepare import from_audio
from seqlvm.data.formats import speech
from seqlvm.data.prepare import chorales
from seqlvm.data.formats.pianoroll import DataError

__all__ = ["prepare_speech_demo", "SENTENCES", "VOICES", "CACHE_NAME",
           "SAMPLE_RATE", "FRAME_SIZE"]

CACHE_NAME = "speech-demo"
SAMPLE_RATE = 16000
FRAME_SIZE = 200

# espeak-ng voices, "LANGUAGE" or "LANGUAGE+VARIANT" (`espeak-ng --voices=en`,
# `espeak-ng --voices=variant`).
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-us+f2",
          "en-gb+f3")

SENTENCES = (
    "The old boat drifted slowly past the reeds.",
    "A cold wind swept the dust across the yard.",
    "She folded the letter and sealed it with wax.",
    "The baker sold the last loaf before noon.",
    "Bright lamps hung from the beams of the barn.",
    "He tied the rope to a post near the gate.",
    "The kettle sang while the bread was toasting.",
    "Thick fog rolled in over the quiet harbour.",
    "Pick a ripe pear from the top of the basket.",
    "The clock on the wall struck nine times.",
    "Green moss grew on the north side of the stone.",
    "A small dog barked at the passing cart.",
    "The children ran home when the bell rang.",
    "Pour the milk into the blue jug on the shelf.",
    "The farmer mended the fence after the storm.",
    "Her coat was made of soft brown wool.",
    "The path wound up the hill to the chapel.",
    "Two fish leapt from the pond at dawn.",
    "Salt and pepper stood beside the plate.",
    "The train was late because of the snow.",
    "A stack of books leaned against the desk.",
    "The painter chose a deep shade of red.",
    "We sat by the fire and told long stories.",
    "The leaves turned gold in early autumn.",
    "Keep the key in the drawer by the door.",
    "The horse trotted down the muddy lane.",
    "Rain tapped softly on the tin roof all night.",
    "The market opens early on a Saturday.",
    "A thin crack ran along the white wall.",
    "The sailor coiled the line on the deck.",
    "Fresh bread smells sweet in the morning.",
    "The boy found a shell on the sandy beach.",
    "Heavy boots left prints in the wet clay.",
    "The candle flickered and then went out.",
    "She hummed a tune while she swept the floor.",
    "The bridge was built of timber and iron.",
    "Paper lanterns glowed above the street.",
    "The goat climbed onto the low stone wall.",
    "Slice the apple into eight thin pieces.",
    "The wagon creaked under its load of hay.",
    "A gentle breeze cooled the hot afternoon.",
    "The owl called twice from the dark wood.",
    "They planted rows of beans in the spring.",
    "The glass vase fell and broke on the tiles.",
    "His hands were rough from years of work.",
    "The river rose after three days of rain.",
    "Light the stove before the guests arrive.",
    "The mayor spoke to the crowd in the square.",
    "A red kite soared high above the field.",
    "The soup was hot and full of spice.",
    "Wipe the table clean with a damp cloth.",
    "The tailor measured the cloth twice.",
    "Snow lay deep on the roofs of the town.",
    "The cat slept in a patch of warm sun.",
    "Each room in the house had a tall window.",
    "The miller ground the wheat into flour.",
    "A loud crash woke the whole street.",
    "The ship sailed west with the evening tide.",
    "Bees buzzed among the purple flowers.",
    "The lid of the chest was stiff and heavy.",
    "Stir the paint well before you use it.",
    "The cook added a pinch of salt to the stew.",
    "A faint star shone low in the east.",
    "The wheel came loose on the rocky road.",
    "The nurse wrapped the cut in a clean bandage.",
    "Frost covered the grass on the first cold day.",
    "The judge read the verdict in a calm voice.",
    "Smoke curled up from the chimney of the inn.",
    "The map showed a trail along the coast.",
    "Plums and cherries filled the wooden bowl.",
    "The guard stood still beside the iron door.",
    "A narrow stair led down to the cellar.",
)

_SEED = 2012


def _split_of(i):
  return {7: "valid", 8: "test"}.get(i % 9, "train")


def _check_espeak():
  program = shutil.which("espeak-ng")
  if program is None:
    raise DataError(
        "The speech demo needs the espeak-ng program, which is not on PATH. "
        "Install it (Debian/Ubuntu: sudo apt-get install espeak-ng; Fedora: "
        "sudo dnf install espeak-ng; macOS: brew install espeak-ng), or "
        "prepare your own recordings with `seqlvm data from-audio DIR --out "
        "NAME`.")
  return program


def _available(program, voices):
  """The voices in `voices` that this espeak-ng has.

  espeak-ng falls back to its default voice, silently and with status 0,
  for a voice it does not know, so the voices are checked up front.
  """

  def column(option, index):
    listing = subprocess.run([program, option], capture_output=True,
                             text=True, check=True).stdout.splitlines()[1:]
    return {line.split()[index] for line in listing if len(line.split()) > 4}

  languages = column("--voices=en", 1)
  variants = {v.rsplit("/", 1)[-1] for v in column("--voices=variant", 4)}
  return [v for v in voices if v.split("+")[0] in languages and (
      "+" not in v or v.split("+", 1)[1] in variants)]


def _jobs(folder, limit):
  """(text, voice, speed, pitch, path) for every utterance."""
  taken = {"train": 0, "valid": 0, "test": 0}
  jobs = []
  for i, sentence in enumerate(SENTENCES):
    split = _split_of(i)
    if limit is not None and taken[split] >= limit:
      continue
    taken[split] += 1
    for j, voice in enumerate(VOICES):
      rng = random.Random(_SEED * 1000 + i * len(VOICES) + j)
      jobs.append((sentence, voice, rng.randint(145, 185),
                   rng.randint(35, 65),
                   os.path.join(folder, split, voice, f"s{i:03d}.wav")))
  return jobs


def _speak(program, job):
  text, voice, speed, pitch, path = job
  os.makedirs(os.path.dirname(path), exist_ok=True)
  command = [program, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
             path, text]
  result = subprocess.run(command, capture_output=True, text=True,
                          check=False)
  if result.returncode != 0 or not os.path.exists(path):
    raise DataError(f"espeak-ng failed ({result.returncode}) on: "
                    f"{' '.join(command)}\n{result.stderr.strip()}")


def prepare_speech_demo(directory=None, progress=True, force=False,
                        limit=None):
  """Prepares (once) and returns the folder of the embedded speech set.

  Args:
    directory: where to cache it. Default value: `chorales.data_dir()`.
    progress: print progress to stderr. Default value: True.
    force: prepare again even if cached. Default value: False.
    limit: use only the first `limit` sentences of each split (for tests).
      A limited set is cached under its own name.

  Returns:
    path: the prepared folder (manifest.json and TFRecord shards, see
      `from_audio.from_audio`).

  Raises:
    DataError: if espeak-ng is not installed or fails.
  """
  directory = directory or chorales.data_dir()
  name = CACHE_NAME if limit is None else f"{CACHE_NAME}-first{limit}"
  path = os.path.join(directory, name)
  if os.path.exists(os.path.join(path, speech.MANIFEST_NAME)) and not force:
    return path
  program = _check_espeak()
  voices = _available(program, VOICES)
  if voices != list(VOICES):
    missing = sorted(set(VOICES) - set(voices))
    raise DataError(f"{program} lacks the voice(s) {', '.join(missing)}; "
                    "install a newer espeak-ng (1.49 or later).")
  start = time.time()
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix=".speech-demo-",
                                   dir=directory) as tmp:
    jobs = _jobs(tmp, limit)
    if progress:
      print(f"Speaking {len(jobs)} utterances with espeak-ng into {path} "
            "(once; later runs reuse it)...", file=sys.stderr)
    workers = min(8, (os.cpu_count() or 1) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for _ in pool.map(functools.partial(_speak, program), jobs):
        pass

    def log(message):
      if progress:
        print(message.replace(tmp, "espeak-ng recordings"), file=sys.stderr)

    manifest = from_audio.from_audio(tmp, path, frame_size=FRAME_SIZE,
                                sample_rate=SAMPLE_RATE, force=True,
                                progress=progress, log=log)
  # The temporary folder is gone; name the generator instead.
  manifest["source"] = f"espeak-ng ({', '.join(VOICES)}): seqlvm speech demo"
  speech.write_manifest(manifest, path)
  if progress:
    print(f"  done in {time.time() - start:.1f} s", file=sys.stderr)
  return path
