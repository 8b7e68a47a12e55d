"""encoding.json, written by data_prep resize, read by the tester."""
from stvit_video.utils.encoding_info import ENCODING_INFO, encoded_short_side


def test_the_encoded_short_side_is_read_from_data_preps_file(tmp_path):
    assert encoded_short_side(tmp_path) is None  # prepared elsewhere
    (tmp_path / ENCODING_INFO).write_text('{"short_side": 256, "gop": 32}')
    assert encoded_short_side(tmp_path) == 256
    (tmp_path / ENCODING_INFO).write_text("[1, 2]")  # not what data_prep writes
    assert encoded_short_side(tmp_path) is None
