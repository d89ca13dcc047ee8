"""Pictures (PNG) with matplotlib: pianorolls (time on x, pitch on y) and
speech waveforms with their spectrograms."""

import numpy as np

from seqlvm import fileio

__all__ = ["write_pianoroll_png", "write_waveform_png"]


def write_pianoroll_png(rolls, path, titles=None, lowest_note=21):
  """Draws one panel per roll `[T, 88]` (binary or probabilities) to a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rolls = [np.asarray(r, np.float32) for r in rolls]
  fig, axes = plt.subplots(len(rolls), 1, squeeze=False,
                           figsize=(8, 2.2 * len(rolls)))
  for i, (ax, roll) in enumerate(zip(axes[:, 0], rolls)):
    ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys",
              vmin=0., vmax=1., interpolation="nearest",
              extent=(0, len(roll), lowest_note - .5,
                      lowest_note + roll.shape[1] - .5))
    ax.set_ylabel("MIDI note")
    if titles is not None:
      ax.set_title(titles[i], fontsize=9)
  axes[-1, 0].set_xlabel("step")
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, dpi=100, format="png")
  plt.close(fig)


def write_waveform_png(waveforms, path, sample_rate, titles=None):
  """Draws each waveform over its spectrogram, one row per waveform."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  waveforms = [np.asarray(w, np.float32) for w in waveforms]
  fig, axes = plt.subplots(len(waveforms), 2, squeeze=False,
                           figsize=(10, 2.2 * len(waveforms)))
  for i, w in enumerate(waveforms):
    seconds = np.arange(len(w)) / sample_rate
    axes[i, 0].plot(seconds, w, linewidth=0.4, color="black")
    axes[i, 0].set_xlim(0, max(len(w) / sample_rate, 1e-3))
    axes[i, 0].set_ylabel("amplitude")
    axes[i, 1].specgram(w, Fs=sample_rate, NFFT=256, noverlap=128,
                        cmap="Greys")
    axes[i, 1].set_ylabel("Hz")
    if titles is not None:
      axes[i, 0].set_title(titles[i], fontsize=9)
  axes[-1, 0].set_xlabel("seconds")
  axes[-1, 1].set_xlabel("seconds")
  fig.tight_layout()
  with fileio.atomic_write(path, "wb") as f:
    fig.savefig(f, dpi=100, format="png")
  plt.close(fig)
