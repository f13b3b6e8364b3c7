"""Initializers for leaf locations and sum accumulators."""

from libspn_keras.initializers._dirichlet import Dirichlet
from libspn_keras.initializers._epsilon_inverse_fan_in import EpsilonInverseFanIn
from libspn_keras.initializers._equidistant import Equidistant
from libspn_keras.initializers._kmeans import KMeans
from libspn_keras.initializers._poon_domingos import (
    BasePoonDomingosQuantileSplit,
    PoonDomingosMeanOfQuantileSplit,
    PoonDomingosStddevOfQuantileSplit,
)
from libspn_keras.logspace import LogspaceWrapperInitializer, logspace_wrapper_initializer

__all__ = [
    "BasePoonDomingosQuantileSplit",
    "Dirichlet",
    "EpsilonInverseFanIn",
    "Equidistant",
    "KMeans",
    "LogspaceWrapperInitializer",
    "PoonDomingosMeanOfQuantileSplit",
    "PoonDomingosStddevOfQuantileSplit",
    "logspace_wrapper_initializer",
]
