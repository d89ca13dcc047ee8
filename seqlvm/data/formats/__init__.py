"""File formats, reading and writing: pianoroll pickles, MIDI, recordings
and the prepared speech shards."""

__all__ = ["pianoroll", "midi", "recordings", "speech"]
