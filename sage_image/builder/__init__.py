"""Build stage: plan a diskimage-builder run from the catalog, run it, write the manifest."""
