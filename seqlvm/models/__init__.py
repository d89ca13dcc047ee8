"""Sequence models implementing the contract of `seqlvm.models.base`."""

from seqlvm.models import heads
from seqlvm.models import nets
from seqlvm.models.base import SequenceModel
from seqlvm.models.base import StepOutput
from seqlvm.models.draw import DRAW
from seqlvm.models.lgssm import LinearGaussianSSM
from seqlvm.models.srnn import SRNN
from seqlvm.models.vrnn import VRNN
from seqlvm.models.wavenet import VRNNWaveNet
from seqlvm.models.wavenet import WaveNet
from seqlvm.models.wavenet import WaveNetStack

__all__ = ["heads", "nets", "SequenceModel", "StepOutput",
           "LinearGaussianSSM", "VRNN", "SRNN", "DRAW", "WaveNet",
           "VRNNWaveNet", "WaveNetStack"]
