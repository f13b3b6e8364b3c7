"""Structures learned from data: Chow-Liu trees, hidden Chow-Liu trees (HCLT) and LearnSPN."""

from libspn_keras.structure._chow_liu import ChowLiuTree, chow_liu_tree
from libspn_keras.structure._hclt import hclt
from libspn_keras.structure._learn_spn import LearnedSPN, learn_spn, learn_spn_structure

__all__ = ["ChowLiuTree", "LearnedSPN", "chow_liu_tree", "hclt", "learn_spn", "learn_spn_structure"]
