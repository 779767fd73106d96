"""sage-node: a Waggle node's data path on one machine (see docs/sage-node.md)."""

__version__ = "0.1.0"
