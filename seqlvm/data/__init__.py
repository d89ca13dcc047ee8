"""Datasets: pianorolls, prepared speech and the runtime input pipeline.

- Formats: `pianoroll` (the Boulanger-Lewandowski pickles), `midi` (MIDI
  files), `audio` (WAV/NIST SPHERE reading and the speech shards).
- Preparation: `fetch` (the four standard sets), `midi_import` (`seqlvm data
  from-midi`), `audio.from_audio` (`from-audio`), `chorales` and
  `speech_demo` (the embedded defaults), `collect` (finding and splitting
  files).
- Input pipeline: `sources` (the `Source` interface, tf.data batches),
  `registry` (dataset names and the data directory), `batching`.

Output (MIDI, WAV and PNG of samples) is `seqlvm.render`. Names are imported
on first use, so importing this package does not import TensorFlow.
"""

import importlib

_LAZY = {
    "pad_batch": "seqlvm.data.batching",
    "data_dir": "seqlvm.data.chorales",
    "prepare_chorales": "seqlvm.data.chorales",
    "DataError": "seqlvm.errors",
    "Pianorolls": "seqlvm.data.pianoroll",
    "SPLITS": "seqlvm.data.pianoroll",
    "load_pianoroll": "seqlvm.data.pianoroll",
    "notes_to_roll": "seqlvm.data.pianoroll",
    "roll_to_notes": "seqlvm.data.pianoroll",
    "save_pianoroll": "seqlvm.data.pianoroll",
    "canonical": "seqlvm.data.registry",
    "resolve": "seqlvm.data.registry",
    "Source": "seqlvm.data.sources",
    "InMemorySource": "seqlvm.data.sources",
    "SpeechSource": "seqlvm.data.sources",
    "as_source": "seqlvm.data.sources",
    "open_source": "seqlvm.data.sources",
}
_SUBMODULES = ("audio", "batching", "chorales", "collect", "fetch", "midi",
               "midi_import", "pianoroll", "registry", "sources",
               "speech_demo")

__all__ = sorted(_LAZY) + list(_SUBMODULES)


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  if name in _SUBMODULES:
    return importlib.import_module(f"seqlvm.data.{name}")
  raise AttributeError(f"module 'seqlvm.data' has no attribute {name!r}")


def __dir__():
  return sorted(__all__)
