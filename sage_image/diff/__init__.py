"""`sage-image diff`: what changed between two builds (or a build and production)."""
