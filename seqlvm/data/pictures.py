"""Pianoroll pictures (PNG) with matplotlib: time on x, pitch on y."""

import numpy as np

from seqlvm import fileio

__all__ = ["write_pianoroll_png"]


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
