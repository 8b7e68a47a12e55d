"""MODEL.NUM_CLASSES 0: the number of classes comes from the data folder when the job starts."""
import pytest

from stvit_video.config import load_config
from stvit_video.engine.launch import with_data_num_classes
from stvit_video.utils.errors import ConfigError, DataError


def _cfg(data_dir, classes=0):
    return load_config("demo", ["MODEL.NUM_CLASSES", str(classes), "DATA.PATH_TO_DATA_DIR", str(data_dir)])


def test_classnames_txt_gives_the_count(tmp_path):
    (tmp_path / "classnames.txt").write_text("playing guitar\nsurfing water\nyoga\n")
    assert with_data_num_classes(_cfg(tmp_path)).MODEL.NUM_CLASSES == 3


def test_class_folders_give_it_without_classnames(tmp_path):
    for split, cls in (("train", "a b"), ("train", "c"), ("val", "d")):
        (tmp_path / split / cls).mkdir(parents=True)
    assert with_data_num_classes(_cfg(tmp_path)).MODEL.NUM_CLASSES == 3


def test_a_set_number_is_kept_and_no_data_is_an_error_naming_the_file(tmp_path):
    assert with_data_num_classes(_cfg(tmp_path, 7)).MODEL.NUM_CLASSES == 7
    with pytest.raises(DataError, match=rf"MODEL.NUM_CLASSES 0 takes the classes from {tmp_path}/classnames.txt, "
                       "which does not exist"):
        with_data_num_classes(_cfg(tmp_path))
    (tmp_path / "classnames.txt").write_text("a\n\nb\n")
    with pytest.raises(DataError, match="classnames.txt line 2: blank class name"):
        with_data_num_classes(_cfg(tmp_path))


def test_negative_counts_are_refused():
    with pytest.raises(ConfigError, match=r"MODEL.NUM_CLASSES = -1: must be an integer >= 1, or 0"):
        load_config("demo", ["MODEL.NUM_CLASSES", "-1"])
