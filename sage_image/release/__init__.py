"""Release stage: the whole catalog matrix, layered builds, scheduling, CI and reports."""
