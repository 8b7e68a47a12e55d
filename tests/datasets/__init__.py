"""Tests of stvit_video.datasets (mirrors the package)."""
