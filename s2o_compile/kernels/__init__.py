"""Kernels: the PyTorch reference (CPU path and oracle) and the Triton kernels (GPU path)."""
