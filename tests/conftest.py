"""Shared fixtures: a random linear-Gaussian model, tiny pianoroll pickles and
the real data in ../shared/data (beside the repository)."""

import os
import pickle

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import soundfile  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PIANOROLLS = os.path.join(os.path.dirname(REPO), "shared", "data",
                                 "pianorolls")


def random_lgssm_params(seed=0, latent_size=3, data_size=2):
  """A stable random linear-Gaussian model (spectral radius 0.9)."""
  rng = np.random.RandomState(seed)
  q, _ = np.linalg.qr(rng.randn(latent_size, latent_size))
  return dict(
      transition_matrix=0.9 * q,
      transition_noise_scale=0.5,
      observation_matrix=rng.randn(data_size, latent_size),
      observation_noise_scale=0.8,
      initial_scale=1.0)


def write_tiny_pianorolls(path, seed=0, sizes=(("train", 12), ("valid", 4),
                                               ("test", 4)),
                          min_len=5, max_len=30):
  rng = np.random.RandomState(seed)

  def sequence():
    return [tuple(sorted(set(rng.randint(48, 72, size=3).tolist())))
            for _ in range(rng.randint(min_len, max_len))]

  with open(path, "wb") as f:
    pickle.dump({k: [sequence() for _ in range(n)] for k, n in sizes}, f)
  return str(path)


@pytest.fixture
def tiny_pianorolls(tmp_path):
  return write_tiny_pianorolls(tmp_path / "tiny.pkl")


def shared_pianoroll(name):
  path = os.path.join(SHARED_PIANOROLLS, name)
  if not os.path.exists(path):
    pytest.skip(f"{path} is not here (it lies in ../shared/data beside the "
                "repository)")
  return path


# Speech test data: frames of FRAME samples at RATE Hz.
FRAME = 40
RATE = 8000


def write_utterances(directory, count, seed):
  """Noisy chirps of different lengths, as 16-bit WAV files."""
  rng = np.random.RandomState(seed)
  directory.mkdir(parents=True)
  for i in range(count):
    n = rng.randint(6, 30) * FRAME + rng.randint(FRAME)
    t = np.arange(n) / RATE
    f0 = rng.uniform(100, 300)
    x = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + t)) + 0.02 * rng.randn(n)
    soundfile.write(directory / f"utt{i:02d}.wav", x, RATE, subtype="PCM_16")


def write_corpus(root, sizes=(("train", 12, 0), ("valid", 4, 1),
                              ("test", 5, 2))):
  """A folder of recordings in train/, valid/ and test/ sub-folders:
  (split, number of utterances, seed) each."""
  for split, count, seed in sizes:
    write_utterances(root / split, count, seed)
  return root


def eval_records(run_dir, split, num_particles):
  """The seed-0 evaluation records of a run, by bound name, with the
  split's num_sequences and num_timesteps (from `seqlvm eval`)."""
  from seqlvm.run import records  # pylint: disable=g-import-not-at-top
  found = records.find(run_dir, split=split, num_particles=num_particles,
                       seed=0)
  assert found, f"no records of {split} at N={num_particles} in {run_dir}"
  results = {r["bound"]: r for r in found}
  results.update(num_sequences=found[0]["num_sequences"],
                 num_timesteps=found[0]["num_timesteps"])
  return results
