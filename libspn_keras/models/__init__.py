"""SPN models that train with or without labels."""

from libspn_keras.models._dynamic import DynamicSumProductNetwork
from libspn_keras.models._sequential import SequentialSumProductNetwork
from libspn_keras.models._sum_product_network import SumProductNetwork

__all__ = ["DynamicSumProductNetwork", "SequentialSumProductNetwork", "SumProductNetwork"]
