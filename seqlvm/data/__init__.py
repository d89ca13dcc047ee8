"""Datasets: pianorolls, prepared speech and the runtime input pipeline.

- `formats/`: reading and writing files: `pianoroll` (the
  Boulanger-Lewandowski pickles), `midi` (MIDI files), `recordings` (WAV,
  NIST SPHERE, FLAC), `speech` (the prepared speech shards and manifest).
- `prepare/`: making datasets: `fetch` (the four standard sets),
  `from_midi` and `from_audio` (`seqlvm data from-midi|from-audio`),
  `chorales` and `speech_demo` (the embedded defaults), `collect` (finding
  and splitting files).
- The input pipeline: `sources` (the `Source` interface and its tf.data
  batches), `registry` (dataset names and the data directory), `batching`
  (a numpy padding helper).

Output (MIDI, WAV and PNG of samples) is `seqlvm.render`. Names are imported
on first use, so importing this package does not import TensorFlow.
"""

from seqlvm import lazy

_LAZY = {
    "pad_batch": "seqlvm.data.batching",
    "data_dir": "seqlvm.data.prepare.chorales",
    "prepare_chorales": "seqlvm.data.prepare.chorales",
    "DataError": "seqlvm.errors",
    "Pianorolls": "seqlvm.data.formats.pianoroll",
    "SPLITS": "seqlvm.registry",
    "load_pianoroll": "seqlvm.data.formats.pianoroll",
    "notes_to_roll": "seqlvm.data.formats.pianoroll",
    "roll_to_notes": "seqlvm.data.formats.pianoroll",
    "save_pianoroll": "seqlvm.data.formats.pianoroll",
    "canonical": "seqlvm.data.registry",
    "resolve": "seqlvm.data.registry",
    "Source": "seqlvm.data.sources",
    "InMemorySource": "seqlvm.data.sources",
    "SpeechSource": "seqlvm.data.sources",
    "as_source": "seqlvm.data.sources",
    "open_source": "seqlvm.data.sources",
}
_SUBMODULES = ("batching", "formats", "prepare", "registry", "sources")

__all__ = sorted(_LAZY) + list(_SUBMODULES)


__getattr__, __dir__ = lazy.attach(__name__, _LAZY, _SUBMODULES)
