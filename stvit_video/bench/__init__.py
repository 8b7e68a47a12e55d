"""Benchmarks and the videos they (and the tests) generate, in one place.

    models   model throughput side by side (inference, the trainer's training step), MFU, peak memory
    loader   decode / item / training-loader throughput per backend and worker count
    encode   data_prep resize, probe, verify and decode cost per video (``python -m stvit_video.bench.encode``)
    videos   lossless and h264 test videos whose frames encode their index (tests, benchmarks)
    cli      ``tools/benchmark.py``

Nothing is imported here: each module pulls in only what it needs (``videos`` and ``encode`` need
no torch model, ``models`` no config or decoder).
"""
