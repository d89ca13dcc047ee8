"""A folder of MIDI files -> a pianoroll pickle (`seqlvm data from-midi`).

Every .mid / .midi file under the folder (any case, recursively) is read with
`midi.read_midi` at one resolution and becomes one sequence. The split comes
from `collect.split_files`: sub-folders train / valid / test if present, else
a seeded shuffle. A file that cannot be read, or has no notes to keep, is
skipped and named at the end (or stops the run with `strict=True`).

Recommended import: `from seqlvm.data.prepare import from_midi`.
"""

import os
import sys

import tqdm

from seqlvm.data.prepare import collect
from seqlvm.data.formats import midi
from seqlvm.data.formats import pianoroll

__all__ = ["from_midi", "MIDI_EXTENSIONS"]

MIDI_EXTENSIONS = (".mid", ".midi")


def _check_splits(directory, counts, layout, when, problems=None):
  """Raises DataError for the first split with no sequences; the files that
  could not be read (`problems`) are named first, since they are why."""
  for name in collect.SPLITS:
    if not counts[name]:
      if layout == "folders":
        hint = f"add MIDI files to {os.path.join(directory, name)}"
      else:
        hint = "add more MIDI files or choose other valid/test fractions"
      sizes = ", ".join(f"{k} {v}" for k, v in counts.items())
      unread = ""
      if problems:
        unread = (f"{len(problems)} file(s) not readable MIDI:\n"
                  f"{problems.report()}\n")
      raise pianoroll.DataError(f"{directory}: {unread}split {name!r} "
                                f"{when} ({sizes}); {hint}.")


def _no_midi_message(directory):
  """What the folder holds instead of MIDI files, for the error."""
  others = collect.find_files(directory, None)
  if not others:
    return f"{directory}: no MIDI files (.mid, .midi) found; it is empty."
  shown = ", ".join(others[:5]) + (f", ... ({len(others)} in all)"
                                   if len(others) > 5 else "")
  return (f"{directory}: no MIDI files (.mid, .midi) found; it holds "
          f"{len(others)} other file(s): {shown}. MIDI files must end in "
          ".mid or .midi.")


def _reason(error, path):
  """The DataError's message without the file name (Problems adds it)."""
  reason = str(error)
  return reason[len(path) + 2:] if reason.startswith(f"{path}: ") else reason


def _read_all(directory, jobs, resolution, problems, progress):
  """Reads every (split, path) job: the note lists per split and the
  counts of dropped notes and of timesteps."""
  sequences = {name: [] for name in collect.SPLITS}
  out_of_range = drums = timesteps = 0
  for name, path in tqdm.tqdm(jobs, desc="Reading MIDI", unit="file",
                              file=sys.stderr, disable=not progress):
    full = os.path.join(directory, path)
    try:
      roll, counts = midi.read_midi(full, resolution)
    except pianoroll.DataError as e:
      problems.add(full, _reason(e, full))
      continue
    sequences[name].append(pianoroll.roll_to_notes(roll))
    out_of_range += counts["out_of_range"]
    drums += counts["drums"]
    timesteps += len(roll)
  return sequences, out_of_range, drums, timesteps


def _summary(out, splits, layout, timesteps, resolution, out_of_range, drums,
             ignored, problems):
  lines = [
      f"Wrote {out}: " + ", ".join(f"{k} {v}" for k, v in splits.items()) +
      f" sequences ({layout} split), {timesteps} {resolution} steps.",
      f"Dropped {out_of_range} notes outside {pianoroll.LOWEST_NOTE}.."
      f"{pianoroll.HIGHEST_NOTE} and {drums} drum notes (channel 10).",
  ]
  if ignored:
    lines.append(f"Ignored {ignored} MIDI file(s) outside the train/valid/"
                 "test folders.")
  if problems.report():
    lines.append(problems.report())
  return "\n".join(lines)


def from_midi(directory, out, resolution="quarter", seed=0,
              valid_fraction=0.1, test_fraction=0.1, strict=False,
              progress=True, log=None):
  """Turns a folder of MIDI files into a pianoroll pickle.

  Args:
    directory: the folder to search (recursively) for .mid / .midi files.
    out: the pickle to write, atomically, in the format of
      `seqlvm.data.load_pianoroll`.
    resolution: the step length, one of `midi.RESOLUTIONS`.
      Default value: "quarter".
    seed: the shuffle seed when there are no train/valid/test sub-folders.
      Default value: 0.
    valid_fraction: the share of files for 'valid' when shuffling.
      Default value: 0.1.
    test_fraction: the share of files for 'test' when shuffling.
      Default value: 0.1.
    strict: stop at the first bad file instead of skipping it.
      Default value: False.
    progress: show a progress bar on stderr. Default value: True.
    log: called with the summary text. Default value: print to stderr.

  Returns:
    report: dict with "path" (the pickle), "resolution", "layout" ("folders"
      or "shuffled"), "splits" (split -> number of sequences), "timesteps"
      (in all splits), "out_of_range" and "drums" (notes dropped), and
      "skipped" (a list of {"file", "reason"}).

  Raises:
    DataError: naming the folder if it has no MIDI files or a split ends up
      empty; naming the file for a bad file with `strict=True`.
    ValueError: for an unknown resolution.
  """
  log = log or (lambda message: print(message, file=sys.stderr))
  if resolution not in midi.RESOLUTIONS:
    raise ValueError(f"Unknown resolution {resolution!r}; choose one of "
                     f"{', '.join(midi.RESOLUTIONS)}.")
  directory = os.fspath(directory)
  paths = collect.find_files(directory, MIDI_EXTENSIONS)
  if not paths:
    raise pianoroll.DataError(_no_midi_message(directory))
  assigned, layout = collect.split_files(paths, seed, valid_fraction,
                                         test_fraction)
  jobs = [(name, path) for name in collect.SPLITS for path in assigned[name]]
  problems = collect.Problems(strict)
  if layout == "shuffled" and any(not v for v in assigned.values()):
    # Too few files for three splits: read them first, so that a file
    # that is not MIDI is named rather than only the split sizes.
    for _, path in jobs:
      full = os.path.join(directory, path)
      try:
        midi.read_midi(full, resolution)
      except pianoroll.DataError as e:
        problems.add(full, _reason(e, full))
  _check_splits(directory, {k: len(v) for k, v in assigned.items()}, layout,
                "would get no files", problems)
  sequences, out_of_range, drums, timesteps = _read_all(
      directory, jobs, resolution, problems, progress)
  _check_splits(directory, {k: len(v) for k, v in sequences.items()}, layout,
                "has no readable MIDI files", problems)
  pianoroll.save_pianoroll(sequences, out)
  splits = {name: len(sequences[name]) for name in collect.SPLITS}
  log(_summary(out, splits, layout, timesteps, resolution, out_of_range,
               drums, len(paths) - len(jobs), problems))
  return {
      "path": os.fspath(out),
      "resolution": resolution,
      "layout": layout,
      "splits": splits,
      "timesteps": timesteps,
      "out_of_range": out_of_range,
      "drums": drums,
      "skipped": problems.to_list(),
  }
