"""Small helpers that import nothing else from stvit_video."""
