"""Set-up shared by every test module (pytest runs it first in every worker)."""

# torch/torchvision must be imported before tensorflow: the other order segfaults inside torchvision ops
# (measured with tensorflow-cpu 2.21 + torch 2.14.1 + torchvision 0.29.1). conftest runs first in every worker.
# torch is a test dependency (requirements-dev.txt): without it the suite fails here rather than skipping.
import torch  # noqa: F401
import torchvision  # noqa: F401
