"""The one comparison both bank heads' parity tests make: a Flax bank head on a padded, masked batch against its
PyTorch oracle's per-keyframe logits, and the parameter gradients of the training loss (pose softmax + sigmoid
BCE over the real RoIs) through both."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from flax import nnx

from acar_jax.interop.torch_reference import heads as oracle
from acar_jax.training import losses


def logit_and_grad_errors(torch_head: torch.nn.Module, flax_head: nnx.Module, forward: Callable, want: torch.Tensor,
                          args: tuple, labels: np.ndarray, padded_hw: tuple[int, int], num_pose: int
                          ) -> tuple[np.ndarray, float, float]:
    """(Flax logits, max |logit error|, max |gradient error| over the oracle's parameters).

    args: the head's inputs as jax arrays (slow, fast, boxes, box_mask, valid_hw, bank, bank_mask); `want` the
    oracle's logits [B, N, K] with the autograd graph; `forward(head, *args)` a jitted Flax call.
    """
    k = want.shape[-1]
    mask = np.asarray(args[3])
    real = torch.from_numpy(mask.reshape(-1))
    probs = torch.cat([torch.softmax(want.view(-1, k)[real][:, :num_pose], 1),
                       torch.sigmoid(want.view(-1, k)[real][:, num_pose:])], 1)
    loss = F.binary_cross_entropy(probs, torch.from_numpy(labels.reshape(-1, k))[real])
    torch_head.zero_grad()
    loss.backward()

    got = np.asarray(forward(flax_head, *args))
    err = float(np.abs(got - want.detach().numpy()).max())

    def loss_fn(h):
        logits = h(*args[:5], padded_hw, *args[5:])
        per_roi = losses.roi_losses(logits, jnp.asarray(labels), args[3], pose_softmax=True,
                                    num_pose_classes=num_pose)
        return jnp.sum(per_roi) / jnp.maximum(jnp.sum(args[3]), 1.0)

    grads = dict(nnx.to_flat_state(nnx.jit(nnx.grad(loss_fn))(flax_head)))
    grad_err = max(float(np.abs(oracle.flax_grads_to_torch_layout(
        {p: v.get_value() for p, v in grads.items()}, name) - p.grad.numpy()).max())
        for name, p in torch_head.named_parameters())
    return got, err, grad_err
