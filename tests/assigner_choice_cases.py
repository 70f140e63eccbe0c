"""Cases for the assigner's choice over the candidate pairs (yolo_workloads/train/pair_assign.py), shared by the CPU
suite and the GPU suite: dense alignments and overlaps with many zeros and ties, Ultralytics' own top-k and choice of
labels on them, and the same values as the static lists would list them."""

from __future__ import annotations

from typing import Any

import torch


def dense_case(shape: tuple[int, int, int], seed: int, device: str = "cpu", low_anchors: bool = True) -> dict[str, Any]:
    """Candidates (a few per label, some among the first anchors when `low_anchors`), labels padded per image, and
    alignments and overlaps from a few values each (ties, zeros, zero alignment at a positive overlap) at the pairs."""
    g = torch.Generator().manual_seed(seed)
    images, labels = shape[:2]
    per_image = torch.randint(0, labels + 1, (images,), generator=g)
    mask_gt = (torch.arange(labels)[None, :] < per_image[:, None]).unsqueeze(-1).float()
    density = float(torch.rand((), generator=g)) * 0.2 + 0.01
    candidates = torch.rand(shape, generator=g) < density
    if low_anchors:
        candidates[..., :12] |= torch.rand(images, labels, 12, generator=g) < 0.3
    candidates &= mask_gt.bool()
    overlap = torch.tensor([0.0, 0.3, 0.6, 0.9])[torch.randint(0, 4, shape, generator=g)]
    score = torch.tensor([0.0, 0.25, 0.5, 1.0])[torch.randint(0, 4, shape, generator=g)]
    align = score.pow(0.5) * overlap.pow(6.0)
    zero = torch.zeros(shape)
    case = {
        "candidates": candidates,
        "mask_gt": mask_gt,
        "align": torch.where(candidates, align, zero),
        "overlap": torch.where(candidates, overlap, zero),
    }
    return {name: value.to(device) for name, value in case.items()}


def ultralytics_choice(case: dict[str, Any], topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ultralytics' `get_pos_mask` steps after the metrics and its `select_highest_overlaps` on the dense case:
    (target_gt_idx, fg_mask, mask_pos)."""
    from ultralytics.utils.tal import TaskAlignedAssigner

    assigner = TaskAlignedAssigner(topk=topk, num_classes=20)
    mask_gt = case["mask_gt"]
    assigner.bs, assigner.n_max_boxes = mask_gt.shape[:2]
    chosen = assigner.select_topk_candidates(case["align"], topk_mask=mask_gt.expand(-1, -1, topk).bool())
    mask_pos = chosen.mul_(case["candidates"]).mul_(mask_gt.bool())
    gt_idx, fg, mask_pos = assigner.select_highest_overlaps(mask_pos, case["overlap"], mask_gt.shape[1], case["align"])
    return gt_idx, fg, mask_pos


def listed(case: dict[str, Any], padding: int = 5) -> Any:
    """The case's pairs as the static lists hold them: in order, then `padding` entries on indices of their own."""
    from yolo_workloads.train.pairs import Pairs

    candidates = case["candidates"]
    found = torch.nonzero(candidates.reshape(-1)).squeeze(1)
    pick = torch.cat((found, torch.arange(padding, device=found.device)))
    real = torch.arange(len(pick), device=found.device) < len(found)
    align = torch.where(real, case["align"].reshape(-1)[pick], 0.5)  # padding with values of its own: ignored
    overlap = torch.where(real, case["overlap"].reshape(-1)[pick], 0.7)
    return Pairs(pick, real, align, overlap)


def stable_topk(values: torch.Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
    """`torch.topk` taking tied values by lowest index, as CUDA's does (the CPU's breaks ties otherwise)."""
    ordered, order = torch.sort(values, dim=dim, descending=largest, stable=True)
    return torch.return_types.topk((ordered.narrow(dim, 0, k), order.narrow(dim, 0, k)))
