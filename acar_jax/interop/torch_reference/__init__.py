"""PyTorch re-implementations of the reference modules (SlowFast, heads, ACFB, LFB): the parity oracles of the tests
and benchmarks. Needs torch and torchvision (requirements-dev.txt)."""
