"""One tuple of video suffixes and one of decoder names, shared by the loader, predict and data_prep."""
from data_prep import layouts
from data_prep.cli import build_parser as data_prep_parser
from stvit_video.datasets import decoder, video_list
from stvit_video.predict_cli import build_parser as predict_parser
from stvit_video.utils.video_formats import DECODER_BACKENDS, VIDEO_EXTENSIONS
from tests.helpers.imports import modules_loaded_by


def _choices(parser, option: str, command: str = "") -> tuple:
    if command:  # the sub-command's own parser
        parser = parser._subparsers._group_actions[0].choices[command]
    (action,) = [a for a in parser._actions if option in a.option_strings]
    return tuple(action.choices)


def test_importing_it_loads_nothing_of_ours_and_no_torch():
    loaded = modules_loaded_by("import stvit_video.utils.video_formats", ("torch", "numpy", "data_prep", "stvit_video"))
    itself = ("stvit_video", "stvit_video.utils", "stvit_video.utils.video_formats", "stvit_video.version")
    assert [m for m in loaded if m not in itself] == []


def test_the_old_names_are_the_shared_tuples():
    assert layouts.VIDEO_EXTENSIONS is video_list.VIDEO_EXTENSIONS is VIDEO_EXTENSIONS
    assert decoder.BACKENDS is DECODER_BACKENDS
    assert tuple(decoder._DECODERS) == DECODER_BACKENDS  # a class for every name, in the same order


def test_command_lines_offer_the_shared_choices():
    assert _choices(predict_parser(), "--backend") == DECODER_BACKENDS
    for command in ("verify", "all"):
        assert _choices(data_prep_parser(), "--backend", command) == DECODER_BACKENDS
    for command in ("index", "all"):
        assert _choices(data_prep_parser(), "--layout", command) == ("auto", *layouts.LAYOUTS)


def test_is_video_name_takes_any_case_and_paths():
    from pathlib import Path

    from stvit_video.utils.video_formats import is_video_name

    assert is_video_name("a/b/clip.MP4") and is_video_name(Path("x.webm")) and is_video_name("y.mpeg")
    assert not is_video_name("notes.txt") and not is_video_name(".DS_Store") and not is_video_name("mp4")

