"""Keras layers for building SPNs: leaves, region layers, regularization and normalization.

Region layers share one tensor layout, batch first: ``[batch, num_scopes, num_decomps, num_nodes]``.
"""

from libspn_keras.layers._base_leaf import BaseLeaf
from libspn_keras.layers._base_sum import BaseSum
from libspn_keras.layers._conv2d_product import Conv2DProduct
from libspn_keras.layers._dense_sum import DenseSum
from libspn_keras.layers._indicator_leaf import IndicatorLeaf
from libspn_keras.layers._latent_tree_sum import LatentTreeSum
from libspn_keras.layers._location_scale_leaves import (
    BaseLocationScaleLeaf,
    CauchyLeaf,
    LaplaceLeaf,
    LocationScaleLeafBase,
    NormalLeaf,
)
from libspn_keras.layers._log_dropout import LogDropout
from libspn_keras.layers._normalize_standard_score import NormalizeAxes, NormalizeStandardScore
from libspn_keras.layers._products import DenseProduct, ReduceProduct
from libspn_keras.layers._root_sum import RootSum
from libspn_keras.layers._scopes import (
    BasePermuteAndPadScopes,
    FlatToRegions,
    GatherScopes,
    PermuteAndPadScopes,
    PermuteAndPadScopesRandom,
)
from libspn_keras.layers._spatial_sums import BaseSpatialSum, Conv2DSum, Local2DSum
from libspn_keras.layers._spatial_to_regions import SpatialToRegions
from libspn_keras.layers._sum_product_tree import SumProductTree
from libspn_keras.layers._temporal_dense_product import TemporalDenseProduct
from libspn_keras.layers._undecompose import Undecompose

__all__ = [
    "BaseLeaf",
    "BaseLocationScaleLeaf",
    "BasePermuteAndPadScopes",
    "BaseSpatialSum",
    "BaseSum",
    "CauchyLeaf",
    "Conv2DProduct",
    "Conv2DSum",
    "DenseProduct",
    "DenseSum",
    "FlatToRegions",
    "GatherScopes",
    "IndicatorLeaf",
    "LaplaceLeaf",
    "Local2DSum",
    "LocationScaleLeafBase",
    "LogDropout",
    "NormalLeaf",
    "NormalizeAxes",
    "NormalizeStandardScore",
    "PermuteAndPadScopes",
    "PermuteAndPadScopesRandom",
    "ReduceProduct",
    "RootSum",
    "SpatialToRegions",
    "SumProductTree",
    "TemporalDenseProduct",
    "Undecompose",
    "LatentTreeSum",
]
