"""Data items, loaders, image handling and batch collation."""

from mmdps.data.item import Item

__all__ = ["Item"]
