"""The functions behind ``python -m data_prep``: one per command, for programs that prepare data.

    from data_prep import api

    api.generate("demo/source", per_class=20)
    summary = api.prepare_all(["demo/source/annotations"], "demo/source/raw", "demo/data", short_side=96)
    summary.lists.check_usable()          # NoUsableVideoError when every list is empty
    print(summary.table, summary.counts["val"]["in_list"])

    mine = api.prepare_folder("my/data", src="my/videos", val=0.2, short_side=256)   # a folder per class
    print(mine.text)                      # the table, duplicates, unreadable videos, small classes

Each function does the work and writes the files of its command; it prints nothing (the
command line in :mod:`data_prep.cli` prints what they return). Bad input raises one of
:data:`INPUT_ERRORS` naming the file or the option: :class:`DataError` for annotations, videos
and manifests, ``ValueError`` for a bad argument, ``OSError`` from the file system.

Imports neither torch nor PyAV: ``verify`` loads the training decoder in its workers only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence, Union

from data_prep.annotations import SPLITS
from data_prep.folder import (DEFAULT_MIN_PER_CLASS, DEFAULT_VAL, Collection, collect_videos, format_folder_summary,
                              small_classes, unreadable_videos)
from data_prep.index import IndexResult, build_index
from data_prep.lists import ListsReport, build_lists, write_lists
from data_prep.manifest import default_manifest_path, read_manifest, write_manifest
from data_prep.parallel import available_cpus
from data_prep.resize import (DEFAULT_CRF, DEFAULT_GOP, DEFAULT_PRESET, DEFAULT_SHORT_SIDE, ResizeOptions,
                              ResizeReport, failure_log_path, resize_all, write_encoding_info)
from data_prep.summary import format_summary
from data_prep.synthetic import SyntheticReport, SyntheticSpec
from data_prep.synthetic import generate as write_synthetic
from data_prep.verify import BAD_LIST, VerifyReport, read_bad_list, verify_outputs, write_bad_list
from stvit_video.utils.atomic import atomic_write_text
from stvit_video.utils.errors import DataError
from stvit_video.utils.video_formats import DECODER_BACKENDS

__all__ = ["DEFAULT_BACKEND", "INPUT_ERRORS", "SUMMARY_FILE", "CollectSummary", "FolderSummary", "IndexSummary",
           "ListsSummary", "NoUsableVideoError", "PrepareSummary", "ResizeSummary", "StepSummary", "VerifySummary",
           "generate", "index", "lists", "prepare_all", "prepare_folder", "resize", "verify"]

PathLike = Union[str, "os.PathLike[str]"]

# What the functions raise for input the user can fix (the command line: one error line, exit 2).
INPUT_ERRORS = (DataError, ValueError, OSError)
# The decoder verify uses unless told: decord, as training (DATA.DECODING_BACKEND) does.
DEFAULT_BACKEND = DECODER_BACKENDS[0]
# The per-split table of `lists` (and `all`), also written here in OUT.
SUMMARY_FILE = "summary.txt"
# Defaults of the built-in data set (128x96, 45 frames at 15 fps, 80 training clips per class).
_SYNTHETIC = SyntheticSpec()


class NoUsableVideoError(DataError):
    """Every list came out empty: nothing to train on (``lists`` and ``all`` exit 1, not 2)."""


class IndexSummary(NamedTuple):
    """What ``index`` found (rows, layout, warnings) and the manifest it wrote."""

    result: IndexResult
    manifest: Path


class ResizeSummary(NamedTuple):
    """What ``resize`` did to its shard of the manifest's rows, and the files it wrote."""

    report: ResizeReport
    total: int  # rows in the manifest; the shard took len(report.results) of them
    failure_log: Path  # resize_failed*.txt: one line per failed video
    encoding_info: Path  # encoding.json


class VerifySummary(NamedTuple):
    """What ``verify`` decoded, with which decoder, and the bad-video list it wrote."""

    report: VerifyReport
    backend: str
    bad_list: Path


class ListsSummary(NamedTuple):
    """The lists ``lists`` wrote in ``out``, how each split was counted, and the table of ``summary.txt``."""

    out: Path
    report: ListsReport
    written: list[Path]  # train/val/test.csv, classnames.txt, classids.json
    table: str

    @property
    def usable(self) -> int:
        """Lines in all lists (test.csv counted too when it repeats val.csv)."""
        return sum(len(entries) for entries in self.report.entries.values())

    def check_usable(self) -> None:
        """Raise :class:`NoUsableVideoError` when every list is empty."""
        if not self.usable:
            raise NoUsableVideoError("no usable video: every list is empty")


class CollectSummary(NamedTuple):
    """What ``folder`` found in the user's videos (kept, duplicates, skipped, splits) and the manifest it wrote."""

    collection: Collection
    manifest: Path


StepSummary = Union[IndexSummary, CollectSummary, ResizeSummary, VerifySummary, ListsSummary]


class PrepareSummary(NamedTuple):
    """Everything ``all`` did, step by step, with the headline numbers as properties."""

    out: Path
    index: IndexSummary
    resize: ResizeSummary
    verify: VerifySummary
    lists: ListsSummary

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """split -> the table's counts (listed, found, missing, resized, failed, in_list) plus
        bad (the failed ones that failed verify) and unlabelled."""
        return {split: dict(self.lists.report.counts[split]) for split in SPLITS}

    @property
    def bad(self) -> dict[str, str]:
        """Resized videos that failed verify: {path relative to out: reason}."""
        return self.verify.report.bad

    @property
    def written(self) -> list[Path]:
        """The lists and class files written."""
        return self.lists.written

    @property
    def table(self) -> str:
        """The per-split table, as printed and saved in ``out/summary.txt``."""
        return self.lists.table

    @property
    def usable(self) -> int:
        """Lines in all lists; 0 means nothing to train on."""
        return self.lists.usable


def _workers(workers: Optional[int]) -> int:
    # None: every CPU this job may use (Slurm / cgroup aware), the command line's default
    return available_cpus() if workers is None else workers


def _manifest(out: PathLike, manifest: Optional[PathLike]) -> Path:
    return Path(manifest) if manifest is not None else default_manifest_path(out)


def _check_backend(backend: str) -> None:
    if backend not in DECODER_BACKENDS:
        raise ValueError(f"decoder backend {backend!r}: use one of {', '.join(DECODER_BACKENDS)} "
                         "(the DATA.DECODING_BACKEND the model trains with)")


def _check_shard(shard: tuple[int, int]) -> None:
    number, count = shard
    if count < 1 or not 0 <= number < count:
        raise ValueError(f"shard {shard}: need (I, N) with N >= 1 and 0 <= I < N")


def generate(out: PathLike, *, per_class: int = _SYNTHETIC.per_class,
             size: tuple[int, int] = (_SYNTHETIC.width, _SYNTHETIC.height), frames: int = _SYNTHETIC.frames,
             fps: int = _SYNTHETIC.fps, seed: int = 0, workers: Optional[int] = None,
             progress: bool = True) -> SyntheticReport:
    """Write the built-in mini-Kinetics to ``out`` (``annotations/`` and ``raw/``), as ``synthetic`` does.

    Args:
        per_class: training clips per class; val and test get a quarter each (at least 1).
        size: (width, height) of the clips, even numbers, at least 16.
        workers: processes; None = every CPU this job may use.

    Raises:
        ValueError: a size, length or count the generator cannot use (the message names it).
    """
    width, height = size
    spec = SyntheticSpec(width=width, height=height, frames=frames, fps=fps, per_class=per_class, seed=seed)
    return write_synthetic(out, spec, workers=_workers(workers), progress=progress)


def index(annotations: Sequence[PathLike], raw: PathLike, out: PathLike, *, layout: str = "auto",
          manifest: Optional[PathLike] = None, workers: Optional[int] = None, progress: bool = True) -> IndexSummary:
    """Match the annotation rows to the raw files under ``raw``, probe them, write the manifest.

    Args:
        annotations: official Kinetics CSV files, or folders of them.
        layout: "auto" or one of :data:`data_prep.layouts.LAYOUTS`.
        manifest: where to write it (.csv or .jsonl); default ``out/manifest.csv``.
    """
    result = build_index(annotations, raw, layout=layout, workers=_workers(workers), progress=progress)
    return IndexSummary(result, write_manifest(_manifest(out, manifest), result.rows))


def resize(out: PathLike, *, options: Optional[ResizeOptions] = None, shard: tuple[int, int] = (0, 1),
           manifest: Optional[PathLike] = None, workers: Optional[int] = None, progress: bool = True) -> ResizeSummary:
    """Re-encode the manifest's clips of ``shard`` = (I, N) into ``out/videos`` and record the encoding.

    A video that fails is a line of the failure log, not an exception; finished outputs are skipped.
    """
    _check_shard(shard)
    options = ResizeOptions() if options is None else options
    rows = read_manifest(_manifest(out, manifest))
    report = resize_all(rows, out, options, workers=_workers(workers), shard=shard, progress=progress)
    info = write_encoding_info(out, options)
    return ResizeSummary(report, len(rows), failure_log_path(out, shard), info)


def verify(out: PathLike, *, backend: str = DEFAULT_BACKEND, seed: int = 0, manifest: Optional[PathLike] = None,
           workers: Optional[int] = None, progress: bool = True) -> VerifySummary:
    """Decode the first, last and a random frame of every output with ``backend``; write ``bad_videos.txt``."""
    _check_backend(backend)
    rows = read_manifest(_manifest(out, manifest))
    report = verify_outputs(rows, out, backend=backend, seed=seed, workers=_workers(workers), progress=progress)
    return VerifySummary(report, backend, write_bad_list(Path(out) / BAD_LIST, report.bad))


def lists(out: PathLike, *, manifest: Optional[PathLike] = None) -> ListsSummary:
    """Write the train/val/test lists, the class files and ``summary.txt`` from the manifest and
    ``bad_videos.txt``. Empty lists are not an error here: see :meth:`ListsSummary.check_usable`."""
    out = Path(out)
    report = build_lists(read_manifest(_manifest(out, manifest)), out, read_bad_list(out / BAD_LIST))
    written = write_lists(report, out)
    table = format_summary(report)
    atomic_write_text(out / SUMMARY_FILE, table + "\n")
    return ListsSummary(out, report, written, table)


def prepare_all(annotations: Sequence[PathLike], raw: PathLike, out: PathLike, *, layout: str = "auto",
                short_side: int = DEFAULT_SHORT_SIDE, fps: Optional[float] = None, gop: int = DEFAULT_GOP,
                crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, mbtree: bool = False,
                backend: str = DEFAULT_BACKEND, seed: int = 0, manifest: Optional[PathLike] = None,
                workers: Optional[int] = None, progress: bool = True,
                on_step: Optional[Callable[[StepSummary], None]] = None) -> PrepareSummary:
    """:func:`index`, :func:`resize`, :func:`verify` and :func:`lists` into ``out``, as ``all`` does.

    Args:
        short_side, fps, gop, crf, preset, mbtree: the encoding (see :class:`ResizeOptions`).
        backend, seed: the decoder verify uses and the seed of its random frame.
        on_step: called with each step's summary as soon as the step is done (the command
            line prints it then, not after hours of resizing).

    Returns:
        The summary, also when every list is empty (check ``usable``, or ``lists.check_usable()``).
    """
    _check_backend(backend)  # now, not after the resize
    options = ResizeOptions(short_side=short_side, fps=fps, gop=gop, crf=crf, preset=preset, mbtree=mbtree)
    notify = on_step if on_step is not None else (lambda step: None)
    indexed = index(annotations, raw, out, layout=layout, manifest=manifest, workers=workers, progress=progress)
    notify(indexed)
    resized, verified, listed = _resize_verify_list(out, indexed.manifest, options=options, backend=backend, seed=seed,
                                                    workers=workers, progress=progress, notify=notify)
    return PrepareSummary(Path(out), indexed, resized, verified, listed)


def _resize_verify_list(out: PathLike, manifest: Path, *, options: ResizeOptions, backend: str, seed: int,
                        workers: Optional[int], progress: bool, notify: Callable[[StepSummary], None]
                        ) -> tuple[ResizeSummary, VerifySummary, ListsSummary]:
    """The steps after the manifest, as ``all`` and ``folder`` run them: :func:`resize`,
    :func:`verify` and :func:`lists` on the manifest just written, each reported when done."""
    resized = resize(out, options=options, manifest=manifest, workers=workers, progress=progress)
    notify(resized)
    verified = verify(out, backend=backend, seed=seed, manifest=manifest, workers=workers, progress=progress)
    notify(verified)
    listed = lists(out, manifest=manifest)
    notify(listed)
    return resized, verified, listed


class FolderSummary(NamedTuple):
    """Everything ``folder`` did: the steps of ``all`` after its own collection step, plus what
    the user should look at in their videos.

    Attributes:
        unreadable: {source video: reason} of the videos left out because the probe, resize
            or verify failed.
        small: {class: {split: videos in the list}} of the classes with fewer than
            ``min_per_class`` videos in the lists.
    """

    out: Path
    collect: CollectSummary
    resize: ResizeSummary
    verify: VerifySummary
    lists: ListsSummary
    unreadable: dict[str, str]
    small: dict[str, dict[str, int]]
    min_per_class: int

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """split -> the table's counts, as :attr:`PrepareSummary.counts`."""
        return {split: dict(self.lists.report.counts[split]) for split in SPLITS}

    @property
    def class_names(self) -> list[str]:
        """Class names in id order (sorted), as in ``classnames.txt``."""
        return self.lists.report.class_names

    @property
    def duplicates(self) -> list[tuple[str, str]]:
        """(left out, same content as) names of the duplicate videos."""
        return [(d.dropped.name, d.kept.name) for d in self.collect.collection.duplicates]

    @property
    def usable(self) -> int:
        """Lines in all lists; 0 means nothing to train on."""
        return self.lists.usable

    @property
    def text(self) -> str:
        """The whole summary, as saved in ``out/summary.txt``."""
        return self.format()

    def format(self, limit: Optional[int] = None) -> str:
        """The summary with at most ``limit`` entries per list (None: all; the command line prints 10)."""
        return format_folder_summary(self.lists.table, self.collect.collection, self.unreadable, self.small,
                                     self.min_per_class, limit=limit, out_name=str(self.out / SUMMARY_FILE))


def prepare_folder(out: PathLike, *, src: Optional[PathLike] = None, csv: Optional[PathLike] = None,
                   val: float = DEFAULT_VAL, seed: int = 0, min_per_class: int = DEFAULT_MIN_PER_CLASS,
                   skip_empty: bool = False, short_side: int = DEFAULT_SHORT_SIDE, fps: Optional[float] = None,
                   gop: int = DEFAULT_GOP, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, mbtree: bool = False,
                   backend: str = DEFAULT_BACKEND, manifest: Optional[PathLike] = None, workers: Optional[int] = None,
                   progress: bool = True, on_step: Optional[Callable[[StepSummary], None]] = None) -> FolderSummary:
    """The user's own videos -> ``out`` prepared exactly as Kinetics (``folder``; :mod:`data_prep.folder`).

    Collects the videos of ``src`` (a folder per class, or split folders of them) or ``csv``
    (``path,label[,split]`` rows), drops duplicates, draws a stratified val split unless one is
    given, writes the manifest, then runs :func:`resize`, :func:`verify` and :func:`lists` on
    it, and writes the whole summary to ``out/summary.txt``. A re-run skips finished outputs.

    Args:
        src, csv: the source; exactly one.
        val, seed: fraction of each class drawn for val (in (0, 1)) when no val split is given,
            and the seed of the draw (also the seed of verify's random frame).
        min_per_class: classes with fewer usable videos are named in the summary.
        skip_empty: an empty class folder is a warning instead of an error.
        short_side, fps, gop, crf, preset, mbtree, backend: as :func:`prepare_all`.
        on_step: called with each step's summary when it is done (:class:`CollectSummary` first).

    Returns:
        The summary, also when every list is empty (check ``usable``).

    Raises:
        ValueError: both or neither source, ``val`` outside (0, 1), ``out`` inside ``src``, a
            bad encoding option or backend; all before any work.
        DataError: a missing source, no class folders, an empty class folder, a CSV line that
            does not parse or names a missing file (file:line).
    """
    _check_backend(backend)  # now, not after the resize
    options = ResizeOptions(short_side=short_side, fps=fps, gop=gop, crf=crf, preset=preset, mbtree=mbtree)
    if min_per_class < 0:
        raise ValueError(f"--min-per-class {min_per_class}: must be >= 0")
    notify = on_step if on_step is not None else (lambda step: None)
    out = Path(out)
    collection = collect_videos(src=src, csv=csv, out=out, val=val, seed=seed, skip_empty=skip_empty,
                                workers=_workers(workers), progress=progress)
    collected = CollectSummary(collection, write_manifest(_manifest(out, manifest), collection.rows))
    notify(collected)
    # from here on exactly the Kinetics steps, on the manifest just written
    resized, verified, listed = _resize_verify_list(out, collected.manifest, options=options, backend=backend,
                                                    seed=seed, workers=workers, progress=progress, notify=notify)
    summary = FolderSummary(out, collected, resized, verified, listed,
                            unreadable_videos(collection, resized.report, verified.report),
                            small_classes(listed.report, min_per_class), min_per_class)
    atomic_write_text(out / SUMMARY_FILE, summary.text + "\n")  # replaces the table alone that lists wrote
    return summary
