"""Build, test and publish Chameleon cloud images for Sage users."""

__version__ = "0.1.0"
