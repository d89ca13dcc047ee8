"""seqlvm: sequential latent-variable models trained with ELBO, IWAE and FIVO.

Recommended import: `import seqlvm` then `seqlvm.bounds.fivo(...)`,
`seqlvm.models.VRNN(...)`, `seqlvm.data.load_pianoroll(...)`.
"""

from seqlvm import bounds
from seqlvm import data
from seqlvm import models
from seqlvm import shapes
from seqlvm import smc

__all__ = ["bounds", "data", "models", "shapes", "smc"]
__version__ = "0.1.0"
