"""Lists of (video path, label): SlowFast CSV files or a folder per class.

SlowFast lists (``{DATA.PATH_TO_DATA_DIR}/{split}.csv``): one ``path<sep>label`` per line,
``sep = DATA.PATH_LABEL_SEPARATOR`` (a space by default). Lines are split at the *last*
separator, because Kinetics class folders contain spaces (``air drumming/abc.mp4 3``).
Blank lines are skipped. Paths:

- absolute paths are used as they are;
- relative paths are joined to ``DATA.PATH_PREFIX`` when it is set (a relative prefix is then
  relative to the working directory, as in SlowFast);
- with an empty prefix, relative paths are resolved against the folder holding the list file
  (not the working directory), so a prepared data folder (data_prep writes paths relative to
  the folder of ``train.csv``) can be moved and used from anywhere.

Class names: when ``{DATA.PATH_TO_DATA_DIR}/classnames.txt`` exists (one name per line, in id
order; written by data_prep), a CSV list takes its ``class_names`` from it; it must hold
exactly ``MODEL.NUM_CLASSES`` names. Without it a CSV list has no names (None).

Text files (lists, class names) are read as UTF-8 with an optional byte-order mark
(``utf-8-sig``): lists saved by Windows spreadsheets start with one, and it would otherwise
become part of the first path.

Class folders (``{DATA.PATH_TO_DATA_DIR}/{split}/<class name>/<video>``), used when the CSV
is absent: class ids index the alphabetically sorted class names of all split folders
together (the Kinetics convention), so the ids agree between train, val and test even if a
split lacks a class.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from stvit_video.utils.errors import DataError
# the files taken from class folders (re-exported; data_prep scans for the same ones)
from stvit_video.utils.video_formats import VIDEO_EXTENSIONS, is_video_name

__all__ = ["CLASS_NAMES_FILE", "SPLITS", "VIDEO_EXTENSIONS", "VideoList", "VideoRecord", "data_class_names",
           "full_class_names", "load_split", "read_class_folders", "read_class_names", "read_csv_list", "records_digest"]

SPLITS = ("train", "val", "test")
# Ordered class names next to the CSV lists, one per line (written by data_prep).
CLASS_NAMES_FILE = "classnames.txt"


class VideoRecord(NamedTuple):
    """One video: its path and class id."""

    path: str
    label: int


class VideoList(NamedTuple):
    """The videos of one split.

    Attributes:
        records: the videos, in file order (CSV) or sorted by class then name (folders).
        class_names: class names by id (folders, or ``classnames.txt`` beside a CSV list), or
            None (a CSV list without ``classnames.txt``).
        source: the file or folder the list came from, for messages.
    """

    records: list[VideoRecord]
    class_names: list[str] | None
    source: str


def records_digest(records: Sequence[VideoRecord]) -> str:
    """SHA-256 of the rows (``path<TAB>label`` lines, in order): the same for a CSV list and the
    class folders it was made from, so reports can tell whether two runs used the same list."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.path}\t{record.label}\n".encode("utf-8"))
    return digest.hexdigest()


def read_csv_list(path: str | os.PathLike, *, num_classes: int, separator: str = " ",
                  path_prefix: str = "") -> list[VideoRecord]:
    """Parse a SlowFast list file (paths resolved as in the module docstring).

    Raises:
        DataError: the file is missing or empty, or a line has no separator, a label that is
            not an integer, or a label outside ``[0, num_classes)``; the message names the
            file and the 1-based line number.
    """
    path = Path(path)
    if not separator:
        raise DataError(f"{path}: DATA.PATH_LABEL_SEPARATOR must not be empty")
    lines = _read_lines(path, "video list")
    # with no prefix, relative paths belong to the list's folder (absolute: cwd-independent)
    base = path_prefix or os.path.abspath(path.parent)
    records = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line:
            records.append(_parse_line(line, path, number, num_classes, separator, base))
    if not records:
        raise DataError(f"video list {path} has no videos")
    return records


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        # utf-8-sig: drops the byte-order mark of files saved by Windows tools
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the {what} {path} as UTF-8 text: {e}") from e


def _parse_line(line: str, path: Path, number: int, num_classes: int, separator: str,
                base: str) -> VideoRecord:
    where = f"{path} line {number}"
    video, sep, label_text = line.rpartition(separator)
    video = video.strip()
    if not sep or not video:
        hint = ""
        if number == 1 and "youtube_id" in line:
            hint = (" (this is the official Kinetics annotation CSV; convert it to "
                    "'path label' lines first)")
        raise DataError(f"{where}: expected 'path{separator}label', got {line!r}{hint}")
    try:
        label = int(label_text.strip())
    except ValueError as e:
        raise DataError(f"{where}: label {label_text.strip()!r} is not an integer ({line!r})") from e
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: label {label} outside [0, MODEL.NUM_CLASSES = {num_classes}) ({line!r})")
    return VideoRecord(os.path.join(base, video), label)  # join keeps an absolute ``video``


def read_class_names(path: str | os.PathLike, *, num_classes: Optional[int]) -> list[str]:
    """Class names in id order from ``path``, one per line (surrounding spaces stripped).

    Args:
        num_classes: ``MODEL.NUM_CLASSES``, the number of names expected (None: any).

    Raises:
        DataError: the file cannot be read, a line is blank (it would shift every later id),
            a name repeats, or the count differs from ``MODEL.NUM_CLASSES``; the message
            names the file (and the line).
    """
    path = Path(path)
    lines = _read_lines(path, "class names file")
    while lines and not lines[-1].strip():  # trailing blank lines (a final newline) are harmless
        lines.pop()
    names: list[str] = []
    for number, raw in enumerate(lines, start=1):
        name = raw.strip()
        if not name:
            raise DataError(f"{path} line {number}: blank class name (one name per line, in id order)")
        if name in names:
            raise DataError(f"{path} line {number}: class {name!r} repeats line {names.index(name) + 1}")
        names.append(name)
    if num_classes is not None and len(names) != num_classes:
        raise DataError(f"{path} lists {len(names)} classes but MODEL.NUM_CLASSES = {num_classes}; "
                        "set MODEL.NUM_CLASSES to the number of names")
    return names


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_class_folders(root: str | os.PathLike, *, num_classes: int,
                       class_names: Sequence[str] | None = None) -> VideoList:
    """List ``root/<class name>/<video>`` files.

    Args:
        root: folder with one sub-folder per class.
        num_classes: ``MODEL.NUM_CLASSES``; more classes than this is an error.
        class_names: the full ordered class list (default: the sorted sub-folders of
            ``root``); a sub-folder missing from it is an error.

    Raises:
        DataError: ``root`` is not a folder, holds no videos, or its classes do not fit.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"class-folder root {root} is not a folder")
    present = _class_dirs(root)
    names = list(class_names) if class_names is not None else present
    unknown = sorted(set(present) - set(names))
    if unknown:
        raise DataError(f"{root}: class folders {unknown[:5]} are not in the class list")
    if len(names) > num_classes:
        raise DataError(f"{root}: {len(names)} classes but MODEL.NUM_CLASSES = {num_classes}")
    ids = {name: i for i, name in enumerate(names)}
    records = [
        VideoRecord(str(video), ids[name])
        for name in present
        for video in sorted((root / name).iterdir())
        if video.is_file() and is_video_name(video)
    ]
    if not records:
        raise DataError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}/<class>/")
    return VideoList(records, names, str(root))


def full_class_names(names: Sequence[str] | None, num_classes: int) -> list[str]:
    """One name per class id: ``names`` as given, ids without a name (class folders may
    cover fewer classes than ``MODEL.NUM_CLASSES``) named by their number."""
    given = list(names or [])[:num_classes]
    return given + [str(i) for i in range(len(given), num_classes)]


def _split_class_names(data_dir: Path) -> list[str]:
    """The class folders of all splits' folders (``data_dir/<split>/<class>/``), sorted: one id per
    name, the same in every split."""
    return sorted({n for s in SPLITS if (data_dir / s).is_dir() for n in _class_dirs(data_dir / s)})


def data_class_names(data_dir: str | os.PathLike) -> list[str]:
    """The classes of a data folder, for ``MODEL.NUM_CLASSES 0``: ``classnames.txt`` when it
    exists, else the union of the class folders of its splits (as :func:`load_split` names them).

    Raises:
        DataError: neither exists, or ``classnames.txt`` is malformed (the message names it).
    """
    data_dir = Path(data_dir)
    names_path = data_dir / CLASS_NAMES_FILE
    if names_path.is_file():
        return read_class_names(names_path, num_classes=None)
    names = _split_class_names(data_dir)
    if not names:
        raise DataError(f"MODEL.NUM_CLASSES 0 takes the classes from {names_path}, which does not exist (nor do "
                        f"class folders {data_dir}/<split>/<class>/); write it (data_prep does) or set "
                        "MODEL.NUM_CLASSES")
    return names


def load_split(data_dir: str | os.PathLike, split: str, *, num_classes: int, separator: str = " ",
               path_prefix: str = "") -> VideoList:
    """The videos of ``split``: ``data_dir/{split}.csv`` if it exists, else ``data_dir/{split}/<class>/``.

    A CSV list takes its class names from ``data_dir/classnames.txt`` when that file exists.

    Raises:
        DataError: neither exists (the message names both), or the list or the class names
            are malformed (labels must be < the number of names = ``num_classes``).
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    csv_path, folder = data_dir / f"{split}.csv", data_dir / split
    if csv_path.is_file():
        names_path = data_dir / CLASS_NAMES_FILE
        # names first: a count mismatch is the likelier mistake, and it explains bad labels
        names = read_class_names(names_path, num_classes=num_classes) if names_path.is_file() else None
        records = read_csv_list(csv_path, num_classes=num_classes, separator=separator,
                                path_prefix=path_prefix)
        return VideoList(records, names, str(csv_path))
    if folder.is_dir():
        return read_class_folders(folder, num_classes=num_classes, class_names=_split_class_names(data_dir))
    raise DataError(f"no {split} list: neither {csv_path} nor the class folders {folder}/<class>/ exist "
                    "(set DATA.PATH_TO_DATA_DIR)")
