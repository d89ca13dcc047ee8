"""seqlvm: sequential latent-variable models trained with ELBO, IWAE and FIVO.

Recommended import: `import seqlvm` then `seqlvm.bounds.fivo(...)`,
`seqlvm.models.VRNN(...)`, `seqlvm.data.load_pianoroll(...)`.
"""

import os

# Quiet TensorFlow's C++ start-up logging (set the variable to override).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seqlvm import bounds  # pylint: disable=g-import-not-at-top,wrong-import-position
from seqlvm import data  # pylint: disable=g-import-not-at-top,wrong-import-position
from seqlvm import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from seqlvm import shapes  # pylint: disable=g-import-not-at-top,wrong-import-position
from seqlvm import smc  # pylint: disable=g-import-not-at-top,wrong-import-position

__all__ = ["bounds", "data", "models", "shapes", "smc"]
__version__ = "0.1.0"
