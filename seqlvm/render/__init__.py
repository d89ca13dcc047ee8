"""Output rendering: samples as MIDI, WAV and PNG pictures.

- `samples`: writes a batch of sampled sequences as the files `seqlvm sample`
  leaves (per data kind: MIDI, PNG and WAV for pianorolls, WAV and PNG for
  speech).
- `pictures`: PNG pianorolls and waveforms with spectrograms.
- `synth`: an additive synthesiser for pianorolls, and WAV writing.

Recommended import: `from seqlvm.render import samples`.
"""

__all__ = ["samples", "pictures", "synth"]
