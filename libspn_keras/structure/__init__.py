"""Structures learned from data: Chow-Liu trees and hidden Chow-Liu trees (HCLT)."""

from libspn_keras.structure._chow_liu import ChowLiuTree, chow_liu_tree
from libspn_keras.structure._hclt import hclt

__all__ = ["ChowLiuTree", "chow_liu_tree", "hclt"]
