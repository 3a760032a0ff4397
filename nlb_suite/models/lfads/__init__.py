"""LFADS in PyTorch; importing the package registers the `lfads` model."""

from .model import LFADS

__all__ = ["LFADS"]
