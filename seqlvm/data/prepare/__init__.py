"""Preparing datasets: `seqlvm data fetch`, `from-midi`, `from-audio` and
the two embedded defaults (Bach chorales, synthesised speech)."""

__all__ = ["chorales", "collect", "fetch", "from_audio", "from_midi",
           "speech_demo"]
