"""Plain helpers shared by the test modules (functions, constants, classes; no fixtures):
``colour_data`` (the engine's tiny three-colour video data set, ``write_colour_data``, and
``tiny_overrides`` for a small fast run on it), ``two_ranks`` (the once-per-session real
2-process gloo run, ``two_rank_results``, and the meter inputs ``meter_data`` / ``feed_meters``),
``models`` (Swin sizes ``SWIN_T`` / ``SWIN_S`` / ``SWIN_MINI``, ``stvit_model``, and the narrow
variants ``VARIANT_NAMES`` / ``variant_factory``), ``results`` (hand-made ``EvalResults`` for
the report tests: ``log_probs``, ``curve_case``, ``random_results``, ``FULL_META``), ``videos``
(the data set tests' small good and bad mp4 files, ``write_test_videos``), ``counting_opener``
(``CountingOpener``, counting the Kinetics data set's opens and reads), ``raw_kinetics``
(data_prep's tiny Kinetics-like raw sets in each layout: ``ROWS``, ``write_indexed_video``,
``build_raw_set``) and ``imports`` (``modules_loaded_by``: what a line of code leaves imported, in a
fresh interpreter). The conftest files keep only pytest fixtures and build them from these.
"""
