"""Kinetics preparation: official CSVs + raw clips -> resized, verified videos and CSV lists
(and the same for a user's own videos: ``folder``).

``python -m data_prep {index,resize,verify,lists,all,folder,synthetic}`` (see ``data_prep/README.md``).
Modules, one job each: ``annotations`` (official CSVs), ``layouts`` (where a row's raw file
is), ``probe`` (what a file holds), ``manifest`` (the index written by ``index``), ``index``,
``encode`` (atomic h264 writing), ``resize``, ``verify``, ``lists``, ``summary`` (the final
table), ``folder`` (own videos: class folders or a CSV list -> manifest rows), ``parallel``
(worker processes), ``synthetic`` (the built-in motion-only mini-Kinetics), ``api`` (the steps
as functions: ``generate``, ``prepare_all``, ``prepare_folder``, ...), ``cli`` (a thin face
over ``api``); the resize benchmark is ``python -m stvit_video.bench.encode``.
Importing it loads neither torch nor PyAV; only ``verify`` loads torch (through the training
decoder).
"""
