"""Reading recordings: WAV, NIST SPHERE and FLAC files, through libsndfile.

TIMIT's NIST SPHERE files are read as they come (libsndfile reads SPHERE
headers). Writing WAV is output rendering: `seqlvm.render.synth.write_wav`.

Recommended import: `from seqlvm.data.formats import recordings`.
"""

import soundfile

__all__ = ["AUDIO_EXTENSIONS", "READ_ERRORS", "info", "read_mono"]

AUDIO_EXTENSIONS = (".wav", ".sph", ".flac")
# What reading a damaged or foreign file raises.
READ_ERRORS = (soundfile.SoundFileError, RuntimeError, OSError, ValueError)


def info(path):
  """The file's header (sample rate, channels, frames), without its data."""
  return soundfile.info(path)


def read_mono(path):
  """float64 `[L]`, channels averaged, and the sample rate."""
  samples, rate = soundfile.read(path, dtype="float64", always_2d=True)
  return samples.mean(axis=1), rate
