"""Pictures (PNG) with matplotlib: pianorolls (time on x, pitch on y) and
speech waveforms with their spectrograms."""

import numpy as np

from seqlvm import fileio

__all__ = ["write_pianoroll_png", "write_waveform_png",
           "write_conditioned_png"]


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


def write_conditioned_png(rolls, observed, path, titles=None,
                          summary_title=None, lowest_note=21):
  """Completions of a partly given pianoroll: one panel per roll `[T, 88]`
  with the given entries tinted blue (their notes dark blue) and the drawn
  notes black, then a panel of the per-step note probability across the
  rolls (grey; the given region outlined)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rolls = [np.asarray(r, np.float32) > 0.5 for r in rolls]
  observed = np.asarray(observed, bool)
  extent = (0, observed.shape[0], lowest_note - .5,
            lowest_note + observed.shape[1] - .5)
  fig, axes = plt.subplots(len(rolls) + 1, 1, squeeze=False,
                           figsize=(8, 2.2 * (len(rolls) + 1)))
  for i, roll in enumerate(rolls):
    image = np.ones(roll.shape + (3,), np.float32)
    image[observed] = (0.85, 0.9, 1.)  # given, off: a light tint
    image[observed & roll] = (0.1, 0.25, 0.85)  # given notes
    image[~observed & roll] = (0., 0., 0.)  # drawn notes
    ax = axes[i, 0]
    ax.imshow(np.transpose(image, [1, 0, 2]), origin="lower", aspect="auto",
              interpolation="nearest", extent=extent)
    ax.set_ylabel("MIDI note")
    if titles is not None:
      ax.set_title(titles[i], fontsize=9)
  ax = axes[-1, 0]
  ax.imshow(np.mean(rolls, axis=0).T, origin="lower", aspect="auto",
            cmap="Greys", vmin=0., vmax=1., interpolation="nearest",
            extent=extent)
  given_steps = np.flatnonzero(observed.any(1))
  for t in given_steps[np.diff(given_steps, prepend=-2) > 1]:
    ax.axvline(t, color=(0.1, 0.25, 0.85), linewidth=0.8)
  for t in given_steps[np.diff(given_steps, append=observed.shape[0] + 2) > 1]:
    ax.axvline(t + 1, color=(0.1, 0.25, 0.85), linewidth=0.8)
  ax.set_ylabel("MIDI note")
  ax.set_title(summary_title or "P(note) across the completions", fontsize=9)
  ax.set_xlabel("step")
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
