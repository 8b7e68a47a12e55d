"""``folder``: a user's own videos -> manifest rows that ``resize``, ``verify`` and ``lists`` take
exactly as they take the rows ``index`` builds for Kinetics.

Sources (one of):

- ``--src DIR``, a folder per class: ``DIR/<class name>/**/<video>``. The class is the name of
  the top-level folder (spaces allowed); videos are found in nested sub-folders too; any
  container whose extension is in :data:`~stvit_video.utils.video_formats.VIDEO_EXTENSIONS`.
- ``--src DIR`` with split folders (UCF101 / HMDB51 style): ``DIR/{train,val[,test]}/<class name>/**/<video>``,
  recognised when every top-level folder is a split name and one of them is ``train``.
- ``--csv FILE``: ``path,label[,split]`` rows; a ``path,label[,split]`` header is optional,
  relative paths are relative to the CSV's folder, and the split (train / val / test) is given
  on every row or on none.

Then::

    collect -> inspect (SHA-256 of the content; probe: header + first frame, as index does)
            -> drop duplicates -> split -> one manifest row per video (data_prep.index.manifest_row)

- Duplicates are files with the same SHA-256. The first by sorted path is kept and the others
  are left out *before* any split is drawn, so one content never lands in two splits (with
  split folders, the copy that sorts first wins: ``train/`` before ``val/``).
- Split: when no video comes with a val split, val is drawn from the train videos (from all
  videos when no split is given): per class, ``fraction x n`` of its n readable videos rounded
  half up, at least 1 when n >= 2 and never all of them, namely those first by
  SHA-256(seed, content digest). The draw depends only on the seed and on the contents: not
  on the file-system order, on file names or on the other classes, and adding videos moves
  few of the old ones. Unreadable videos are never drawn (they count as train in the table).
- Output names: the Kinetics :func:`~data_prep.manifest.output_relpath` with the id
  ``{slug}-{digest[:12]}`` (slug: the file name's letters, digits, ``_`` and ``-``), so names
  with spaces or accents never reach a list file, and a re-run finds the outputs of the last
  one (resize skips them: resumable like ``all``).
- Class ids: the sorted class names (``lists``), as for Kinetics.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

from data_prep.annotations import SPLIT_ALIASES, SPLITS, Annotation
from data_prep.encode import PART_SUFFIX
from data_prep.index import manifest_row, probe_crashed, probe_raw
from data_prep.lists import ListsReport
from data_prep.manifest import ManifestRow, output_relpath
from data_prep.parallel import run_parallel
from data_prep.probe import Probe
from data_prep.resize import ResizeReport
from data_prep.verify import VerifyReport
from stvit_video.utils.errors import DataError
from stvit_video.utils.hashing import file_sha256
from stvit_video.utils.video_formats import VIDEO_EXTENSIONS, is_video_name

__all__ = ["DEFAULT_MIN_PER_CLASS", "DEFAULT_VAL", "SOURCE_KINDS", "Collected", "Collection", "Duplicate", "FileInfo",
           "SourceVideo", "assign_splits", "collect_videos", "drop_duplicates", "folder_rows", "format_folder_summary",
           "inspect_file", "output_id", "read_video_csv", "scan_folder", "small_classes", "unreadable_videos",
           "val_count"]

# How the videos came: a folder per class, split folders of class folders, a CSV list.
SOURCE_KINDS = ("class folders", "split folders", "csv")
# Fraction of each class drawn for val when no val split is given.
DEFAULT_VAL = 0.2
# Classes with fewer usable videos than this are named in the summary.
DEFAULT_MIN_PER_CLASS = 5
# The id is {slug}-{12 hex digits}: at most 53 of the 64 characters an id may have.
_SLUG_LENGTH = 40
_DIGEST_LENGTH = 12
_NOT_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


class SourceVideo(NamedTuple):
    """One video of the user's source.

    Attributes:
        path: the file, absolute.
        label: the class name (folder name or CSV label, surrounding spaces stripped).
        split: "train", "val" or "test" as given; "" when the split is drawn.
        name: how reports name it: the path relative to DIR, or the CSV's path text and line.
        source: the manifest's ``source`` column: the path relative to DIR, or the CSV's file:line.
    """

    path: Path
    label: str
    split: str
    name: str
    source: str


class Collected(NamedTuple):
    """The videos of a source, before they are read."""

    videos: list[SourceVideo]
    kind: str  # one of SOURCE_KINDS
    skipped: list[tuple[str, str]]  # (name, why) of files that are not taken
    warnings: list[str]


class FileInfo(NamedTuple):
    """The SHA-256 of a file's content ("" when it cannot be read) and its probe."""

    digest: str
    probe: Probe


class Duplicate(NamedTuple):
    """A video left out because ``kept`` has the same content."""

    kept: SourceVideo
    dropped: SourceVideo


class Collection(NamedTuple):
    """What ``folder`` found and decided before any video is resized.

    Attributes:
        source: the folder or CSV file given.
        kind: one of :data:`SOURCE_KINDS`.
        rows: the manifest, one row per kept video (status bad: the probe failed).
        names: output path relative to OUT -> how reports name the source video.
        duplicates: the videos left out as copies of a kept one.
        skipped: (name, why) of the files not taken (not a video, not in a class folder).
        warnings: one line each (empty class folders skipped, a class folder named like a split).
        split_rule: how the splits were made, in words.
    """

    source: Path
    kind: str
    rows: list[ManifestRow]
    names: dict[str, str]
    duplicates: list[Duplicate]
    skipped: list[tuple[str, str]]
    warnings: list[str]
    split_rule: str

    @property
    def split_counts(self) -> dict[str, int]:
        """split -> videos in the manifest (unreadable ones included), for the splits present."""
        counts = Counter(row.split for row in self.rows)
        return {split: counts[split] for split in SPLITS if counts[split]}


def _subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders, sorted by name (hidden ones such as ``.git`` are not classes)."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _files_under(folder: Path) -> list[Path]:
    """Every visible file under ``folder``, recursively, sorted; ``.part`` files (unfinished
    writes) skipped."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(parent) / name for name in sorted(files)
                     if not name.startswith(".") and not name.endswith(PART_SUFFIX))
    return found


def _label(text: str, where: str) -> str:
    """A class name: surrounding spaces stripped (``classnames.txt`` is read stripped), no control characters."""
    label = text.strip()
    if not label:
        raise DataError(f"{where}: empty class name")
    if not label.isprintable():  # a tab or line break would break classnames.txt
        raise DataError(f"{where}: class name {label!r} holds a control character (tab, line break); rename it")
    return label


def _not_a_video(path: Path) -> str:
    return f"not a video (extension {path.suffix or 'none'})"


def scan_folder(src: str | os.PathLike, *, skip_empty: bool = False) -> Collected:
    """The videos of class folders (``src/<class>/**``) or split folders (``src/{train,val,test}/<class>/**``).

    Raises:
        DataError: ``src`` is not a folder, holds no class folders (or a split folder holds
            none), a class folder holds no video (unless ``skip_empty``: then a warning), two
            split folders name the same split, or a class name holds a control character.
    """
    src = Path(src)
    if not src.exists():
        raise DataError(f"--src {src} does not exist")
    if not src.is_dir():
        raise DataError(f"--src {src} is not a folder: give the folder holding one sub-folder per class "
                        "(or a path,label list with --csv)")
    top = _subfolders(src)
    split_of = {folder.name: SPLIT_ALIASES.get(folder.name.lower()) for folder in top}
    warnings: list[str] = []
    if top and all(split_of.values()) and "train" in split_of.values():
        kind = "split folders"
        roots: list[tuple[Path, str]] = []
        named: dict[str, str] = {}
        for folder in top:
            split = split_of[folder.name]
            if split in named:
                raise DataError(f"--src {src}: the folders {named[split]}/ and {folder.name}/ are both the "
                                f"{split} split; merge them")
            named[split] = folder.name
            roots.append((folder, split))
    else:
        kind = "class folders"
        roots = [(src, "")]
        trains = [name for name, split in split_of.items() if split == "train"]
        if trains:  # split folders next to class folders: most likely a class really named so
            warnings.append(f"{src}/{trains[0]}/ is read as a class: split folders are only used when every "
                            "top-level folder is a split (train, val, test)")

    def relative(path: Path) -> str:
        return path.relative_to(src).as_posix()

    videos: list[SourceVideo] = []
    skipped: list[tuple[str, str]] = []
    for root, split in roots:
        loose = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        skipped.extend((relative(p), "not in a class folder") for p in loose)
        classes = _subfolders(root)
        if not classes:
            raise DataError(f"no class folders in {root}: expected {root}/<class name>/<videos> "
                            "(the folder name is the class)")
        for folder in classes:
            label = _label(folder.name, f"class folder {folder}")
            files = _files_under(folder)
            found = [p for p in files if is_video_name(p)]
            skipped.extend((relative(p), _not_a_video(p)) for p in files if not is_video_name(p))
            if not found:
                others = f"; {len(files)} other file(s), e.g. {relative(files[0])}" if files else ""
                what = f"class folder {folder} holds no video ({' '.join(VIDEO_EXTENSIONS)}){others}"
                if not skip_empty:
                    raise DataError(f"{what}: add videos, remove the folder, or pass --skip-empty")
                warnings.append(f"{what}: skipped (--skip-empty)")
            videos.extend(SourceVideo(p.absolute(), label, split, relative(p), relative(p)) for p in found)
    if not videos:
        raise DataError(f"no videos ({' '.join(VIDEO_EXTENSIONS)}) under {src}")
    return Collected(videos, kind, skipped, warnings)


def _is_header(cells: Sequence[str]) -> bool:
    return [c.lower() for c in cells[:2]] == ["path", "label"]


def read_video_csv(path: str | os.PathLike) -> Collected:
    """The videos of a ``path,label[,split]`` list (see the module docstring).

    Raises:
        DataError: the file is missing or unreadable, or a line does not parse (field count,
            empty path or label, unknown split, a split on some rows only) or names a file
            that does not exist; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--csv {path} {'is not a file' if path.exists() else 'does not exist'}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: lists saved by spreadsheets start with a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the video list {path} as UTF-8 text: {e}") from e
    base = path.parent
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    videos: list[SourceVideo] = []
    skipped: list[tuple[str, str]] = []
    first_with: dict[bool, int] = {}  # has a split -> first line
    line_end, content_seen = 0, False
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: not a CSV line ({e}); expected path,label[,split]") from e
        number, line_end = line_end + 1, reader.line_num  # a quoted field may span lines: its first one
        where = f"{path}:{number}"
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if not content_seen and _is_header(cells):
            content_seen = True
            if len(cells) > 3 or (len(cells) == 3 and cells[2].lower() != "split"):
                raise DataError(f"{where}: header {','.join(row)!r}: expected path,label[,split]")
            continue
        content_seen = True
        if len(cells) not in (2, 3):
            raise DataError(f"{where}: expected path,label[,split], got {len(cells)} field(s): {','.join(row)!r}")
        text_path, split_text = cells[0], cells[2] if len(cells) == 3 else ""
        if not text_path:
            raise DataError(f"{where}: empty path ({','.join(row)!r})")
        label = _label(cells[1], where)
        split = ""
        if split_text:
            split = SPLIT_ALIASES.get(split_text.lower(), "")
            if not split:
                raise DataError(f"{where}: split {split_text!r} is not one of train, val, test")
        first_with.setdefault(bool(split), number)
        if len(first_with) == 2:
            raise DataError(f"{where}: {'a' if split else 'no'} split, but line {first_with[not split]} has "
                            f"{'none' if split else 'one'}: give every row a split (train/val/test) or none "
                            "(val is then drawn from each class)")
        file = Path(text_path).expanduser()
        file = file if file.is_absolute() else base / file
        if not file.exists():
            raise DataError(f"{where}: video {file} does not exist (relative paths are relative to {base})")
        if not file.is_file():
            raise DataError(f"{where}: {file} is not a file")
        name = f"{text_path} (line {number})"
        if not is_video_name(file):
            skipped.append((name, _not_a_video(file)))
            continue
        videos.append(SourceVideo(file.absolute(), label, split, name, f"{path.name}:{number}"))
    if not videos:
        raise DataError(f"video list {path} names no video (expected path,label[,split] lines)")
    return Collected(videos, "csv", skipped, [])


def inspect_file(path: str) -> FileInfo:
    """SHA-256 and probe of one file; never raises for a bad file (the probe says why)."""
    try:
        digest = file_sha256(path)
    except OSError as e:
        return FileInfo("", Probe(False, f"cannot read the file: {e.strerror or e}"))
    return FileInfo(digest, probe_raw(path))


def _inspect_crashed(path: str) -> FileInfo:
    # runs in the parent process: hashing cannot crash, so the duplicate check still sees the file
    try:
        digest = file_sha256(path)
    except OSError:
        digest = ""
    return FileInfo(digest, probe_crashed(path))


def drop_duplicates(videos: Sequence[SourceVideo],
                    digests: Mapping[Path, str]) -> tuple[list[SourceVideo], list[Duplicate]]:
    """Keep the first video of each content (by sorted path), return (kept, duplicates).

    Videos whose content could not be read (digest "") are all kept (the probe reports them).
    """
    first: dict[str, SourceVideo] = {}
    kept: list[SourceVideo] = []
    duplicates: list[Duplicate] = []
    for video in sorted(videos, key=lambda v: str(v.path)):  # stable: a path listed twice keeps its first line
        digest = digests[video.path]
        if digest in first:
            duplicates.append(Duplicate(first[digest], video))
            continue
        if digest:
            first[digest] = video
        kept.append(video)
    return kept, duplicates


def val_count(count: int, fraction: float) -> int:
    """Videos drawn for val from a class of ``count``: ``fraction x count`` rounded half up,
    at least 1 when there are 2 or more, never all."""
    if count < 2:
        return 0
    return min(count - 1, max(1, int(count * fraction + 0.5)))


def _rank(seed: int, digest: str) -> str:
    return hashlib.sha256(f"{seed}:{digest}".encode("ascii")).hexdigest()


def assign_splits(videos: Sequence[SourceVideo], digests: Mapping[Path, str], usable: Callable[[SourceVideo], bool],
                  *, fraction: float, seed: int) -> tuple[list[SourceVideo], str]:
    """Give every video its split; return (videos, how in words).

    Videos keep a given split; when none has val, each class's val videos are drawn from its
    usable train (or split-less) ones (module docstring); the rest become train.
    """
    if any(v.split == "val" for v in videos):
        return list(videos), "as given"
    pool: dict[str, list[SourceVideo]] = defaultdict(list)
    for video in videos:
        if video.split in ("", "train") and usable(video):
            pool[video.label].append(video)
    drawn: set[Path] = set()
    for members in pool.values():
        ranked = sorted(members, key=lambda v: (_rank(seed, digests[v.path]), str(v.path)))
        drawn.update(v.path for v in ranked[:val_count(len(members), fraction)])
    given = any(v.split for v in videos)
    rule = (f"val drawn from {'train' if given else 'all videos'}: {fraction:.0%} of each class, seed {seed}"
            f"{' (test as given)' if any(v.split == 'test' for v in videos) else ''}")
    return [v._replace(split="val" if v.path in drawn else (v.split or "train")) for v in videos], rule


def output_id(path: Path, digest: str) -> str:
    """The id a video's output is named by: ``{slug}-{digest[:12]}`` (``A-Z a-z 0-9 _ -`` only,
    as a YouTube id; unique because duplicates are dropped)."""
    slug = _NOT_SLUG.sub("_", path.stem).strip("_")[:_SLUG_LENGTH]
    key = digest or hashlib.sha256(str(path).encode("utf-8")).hexdigest()  # unread file: unique by path
    return f"{slug}-{key[:_DIGEST_LENGTH]}" if slug else key[:_DIGEST_LENGTH]


def folder_rows(videos: Sequence[SourceVideo], infos: Mapping[Path, FileInfo]) -> list[ManifestRow]:
    """The manifest rows ``index`` would build: the whole file as the clip [0, duration), not trimmed."""
    rows = []
    for video in videos:
        info = infos[video.path]
        duration = info.probe.duration if info.probe.ok else 0.0
        clip = Annotation(video.label, output_id(video.path, info.digest), 0.0, duration, video.split, video.source)
        rows.append(manifest_row(clip, video.path, info.probe, trim=False))
    return rows


def _check_fraction(val: float) -> None:
    if not 0 < val < 1:
        raise ValueError(f"--val {val}: the validation fraction must be between 0 and 1 (exclusive), e.g. 0.2")


def _check_out(src: Path, out: Path) -> None:
    src, out = src.resolve(), out.resolve()
    if out == src or src in out.parents:
        raise ValueError(f"--out {out} is inside --src {src}: its videos would be read as a class on the next run; "
                         "choose an output folder outside the source")


def collect_videos(*, src: Optional[str | os.PathLike] = None, csv: Optional[str | os.PathLike] = None,
                   out: Optional[str | os.PathLike] = None, val: float = DEFAULT_VAL, seed: int = 0,
                   skip_empty: bool = False, workers: int = 1, progress: bool = True) -> Collection:
    """Find, hash, probe, de-duplicate and split the videos of ``src`` or ``csv``; build the manifest rows.

    Args:
        src, csv: the source, exactly one of them (see the module docstring).
        out: the output folder, which must not lie inside ``src``.
        val, seed: the fraction of each class drawn for val and the seed of the draw.
        skip_empty: an empty class folder is a warning, not an error.
        workers: processes hashing and probing.

    Raises:
        ValueError: both or neither source, ``val`` outside (0, 1), ``out`` inside ``src``.
        DataError: see :func:`scan_folder` and :func:`read_video_csv`.
    """
    if (src is None) == (csv is None):
        raise ValueError("give either --src DIR (a folder per class) or --csv FILE (path,label rows), "
                         f"{'not both' if src is not None else 'none was given'}")
    _check_fraction(val)
    if src is not None and out is not None and Path(src).is_dir():
        _check_out(Path(src), Path(out))
    found = scan_folder(src, skip_empty=skip_empty) if src is not None else read_video_csv(csv)
    paths = sorted({str(v.path) for v in found.videos})
    inspected = run_parallel(inspect_file, paths, workers=workers, desc="inspect", progress=progress,
                             on_crash=_inspect_crashed)
    infos = {Path(p): info for p, info in zip(paths, inspected)}
    digests = {p: info.digest for p, info in infos.items()}
    kept, duplicates = drop_duplicates(found.videos, digests)
    videos, rule = assign_splits(kept, digests, lambda v: infos[v.path].probe.ok, fraction=val, seed=seed)
    # lists follow manifest order: by split, class, then path, for a readable manifest and lists
    videos.sort(key=lambda v: (SPLITS.index(v.split), v.label, str(v.path)))
    rows = folder_rows(videos, infos)
    names = {output_relpath(row): video.name for row, video in zip(rows, videos)}
    source = Path(src if src is not None else csv)
    return Collection(source, found.kind, rows, names, duplicates, found.skipped, found.warnings, rule)


def unreadable_videos(collection: Collection, resized: ResizeReport, verified: VerifyReport) -> dict[str, str]:
    """{source name: reason} of the videos left out: the probe failed, resize failed, or the
    output failed verify."""
    reasons: dict[str, str] = {}
    paths = {output_relpath(row): row.path for row in collection.rows}
    for row in collection.rows:
        if row.status == "bad":
            reasons[output_relpath(row)] = row.reason
    for result in resized.results:
        if result.status == "failed" and result.output not in reasons:
            prefix = f"raw file {paths.get(result.output, '')}: "  # resize names the raw file; we name it better
            reasons[result.output] = result.reason[len(prefix):] if result.reason.startswith(prefix) else result.reason
    for relpath, reason in verified.bad.items():
        reasons.setdefault(relpath, f"the resized video does not decode: {reason}")
    return dict(sorted((collection.names.get(rel, rel), reason) for rel, reason in reasons.items()))


def small_classes(report: ListsReport, minimum: int) -> dict[str, dict[str, int]]:
    """Classes with fewer than ``minimum`` videos in the lists: {name: {split: videos}} (test
    left out when it repeats val)."""
    counts: dict[str, Counter] = {name: Counter() for name in report.class_names}
    for split in SPLITS:
        if split == "test" and report.test_from_val:
            continue
        for _, label in report.entries[split]:
            counts[report.class_names[label]][split] += 1
    return {name: {s: c[s] for s in SPLITS if c[s]} for name, c in counts.items() if sum(c.values()) < minimum}


def _section(title: str, entries: Sequence[str], limit: Optional[int], out_name: str) -> list[str]:
    if not entries:
        return [f"{title}: none"]
    shown = entries if limit is None else entries[:limit]
    lines = [f"{title}: {len(entries)}"] + [f"  {entry}" for entry in shown]
    if len(shown) < len(entries):
        lines.append(f"  ... and {len(entries) - len(shown)} more (all in {out_name})")
    return lines


def format_folder_summary(table: str, collection: Collection, unreadable: Mapping[str, str],
                          small: Mapping[str, Mapping[str, int]], minimum: int, *, limit: Optional[int] = None,
                          out_name: str = "summary.txt") -> str:
    """The per-split table, then how the videos were split, the duplicates, unreadable videos,
    small classes, skipped files and warnings; ``limit`` entries per list (None: all)."""
    duplicates = []
    for kept, dropped in collection.duplicates:
        other = f", labelled {kept.label!r} there, {dropped.label!r} here" if kept.label != dropped.label else ""
        duplicates.append(f"{dropped.name}  (same content as {kept.name}{other})")
    small_lines = [f"{name}: {sum(c.values())} ({', '.join(f'{s} {n}' for s, n in c.items()) or 'none usable'})"
                   for name, c in small.items()]
    lines = [table, f"source: {collection.source} ({collection.kind}); splits: {collection.split_rule}"]
    lines += _section("duplicates left out (same SHA-256; the first by path kept)", duplicates, limit, out_name)
    lines += _section("unreadable, left out", [f"{n}: {r}" for n, r in unreadable.items()], limit, out_name)
    lines += _section(f"classes with fewer than {minimum} videos", small_lines, limit, out_name)
    lines += _section("files skipped", [f"{n}: {why}" for n, why in collection.skipped], limit, out_name)
    lines += [f"warning: {w}" for w in collection.warnings]
    return "\n".join(lines)
