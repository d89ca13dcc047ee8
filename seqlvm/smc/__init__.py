"""Sequential Monte Carlo: the sweep, resampling schemes, criteria and
gradient estimators."""

from seqlvm.smc import criteria
from seqlvm.smc import diagnostics
from seqlvm.smc import gradients
from seqlvm.smc import resampling
from seqlvm.smc.filter import FINAL_REDUCTIONS
from seqlvm.smc.filter import SMCResult
from seqlvm.smc.filter import smc

__all__ = ["criteria", "diagnostics", "gradients", "resampling", "smc", "SMCResult",
           "FINAL_REDUCTIONS"]
