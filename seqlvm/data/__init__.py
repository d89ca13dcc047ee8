"""Datasets: pianorolls, prepared speech, batching, MIDI, audio and pictures."""

from seqlvm.data.batching import make_dataset
from seqlvm.data.batching import pad_batch
from seqlvm.data.chorales import data_dir
from seqlvm.data.chorales import prepare_chorales
from seqlvm.data.pianoroll import DataError
from seqlvm.data.pianoroll import Pianorolls
from seqlvm.data.pianoroll import SPLITS
from seqlvm.data.pianoroll import load_pianoroll
from seqlvm.data.pianoroll import notes_to_roll
from seqlvm.data.pianoroll import roll_to_notes
from seqlvm.data.pianoroll import save_pianoroll
from seqlvm.data.registry import canonical
from seqlvm.data.registry import resolve
from seqlvm.data.sources import InMemorySource
from seqlvm.data.sources import SpeechSource
from seqlvm.data.sources import as_source
from seqlvm.data.sources import open_source

__all__ = [
    "DataError", "Pianorolls", "SPLITS", "load_pianoroll", "save_pianoroll",
    "notes_to_roll", "roll_to_notes", "make_dataset", "pad_batch",
    "prepare_chorales", "data_dir", "resolve", "canonical", "InMemorySource",
    "SpeechSource", "as_source", "open_source",
]
