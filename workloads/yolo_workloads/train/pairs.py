"""The assigner's candidate pairs as the static lists hold them (static_lists.py), shared by the steps that work on
them instead of on dense (images, labels, anchors) tensors: the choice (pair_assign.py) and the normalisation
(pair_normalize.py)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Pairs(NamedTuple):
    """Flat indices into (images, labels, anchors), on the host's bound: each entry's `pick` (padding: an index of its
    own), whether it is a pair (`real`, not padding), and the pair's alignment and overlap."""

    pick: torch.Tensor
    real: torch.Tensor
    align: torch.Tensor
    overlap: torch.Tensor
