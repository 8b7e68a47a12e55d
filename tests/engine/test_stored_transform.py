"""The test short side (DATA.TEST_SHORT_SIDE): recorded in checkpoints, restored for testing."""
from stvit_video.config import get_cfg_defaults, with_values
from stvit_video.datasets.kinetics import clip_dataset
from stvit_video.datasets.video_list import VideoList, VideoRecord
from stvit_video.engine import job_setup
from stvit_video.engine.views import stored_transform_keys, with_stored_transform


def test_torchvision_style_short_side_round_trips_and_the_default_stays_zero():
    cfg = with_values(get_cfg_defaults(), {"DATA.TEST_SHORT_SIDE": 256, "TEST.NUM_SPATIAL_CROPS": 1})
    stored = job_setup.test_transform_of(cfg)
    assert stored["short_side"] == 256 and stored["crop"] == 224
    restored = with_stored_transform(get_cfg_defaults(), stored)
    assert restored.DATA.TEST_SHORT_SIDE == 256
    dataset = clip_dataset(restored, "test", VideoList([VideoRecord("x.mp4", 0)], None, "t"))
    assert (dataset.transform.short_side, dataset.transform.crop_size) == (256, 224)
    # a checkpoint written with the default records short side = crop: no change, no warning
    default = job_setup.test_transform_of(get_cfg_defaults())
    assert default["short_side"] == 224
    assert stored_transform_keys(get_cfg_defaults(), default)["DATA.TEST_SHORT_SIDE"] == 0
