"""uhrtex: ultra-high-resolution facial texture reconstruction, plain PyTorch.

This package never imports lightning, hydra or wandb; the framework folders wrap it.
"""

__version__ = "0.1.0"
