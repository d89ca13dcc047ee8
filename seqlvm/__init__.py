"""seqlvm: sequential latent-variable models trained with ELBO, IWAE and FIVO.

Recommended import: `import seqlvm` then `seqlvm.bounds.fivo(...)`,
`seqlvm.models.VRNN(...)`, `seqlvm.data.load_pianoroll(...)`,
`seqlvm.run.train(...)`.

The sub-packages are imported on first use (as Sonnet's and TFP's
re-exports), so `import seqlvm` and `seqlvm --help` do not import
TensorFlow.
"""

import os

from seqlvm import lazy

# Quiet TensorFlow's C++ start-up logging (set the variable to override).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["bounds", "config", "data", "errors", "infer", "models",
           "registry", "render", "run", "shapes", "smc", "__version__"]
__version__ = "0.1.0"


__getattr__, __dir__ = lazy.attach(__name__, submodules=__all__[:-1])
