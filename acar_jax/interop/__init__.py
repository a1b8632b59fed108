"""PyTorch interop: released checkpoints imported by name, and PyTorch re-implementations of the reference used as
parity oracles."""
