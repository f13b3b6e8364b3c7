"""Structures learned from data: Chow-Liu trees and hidden Chow-Liu trees (HCLT)."""

from libspn_keras.structure._chow_liu import ChowLiuTree, chow_liu_tree

__all__ = ["ChowLiuTree", "chow_liu_tree"]
