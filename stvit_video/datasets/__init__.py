"""Kinetics-style video data: lists -> clip sampling -> decoding -> transforms -> loaders.

Modules, one job each: ``video_list`` (CSV / class folders / class names), ``clip_sampling``
(frame indices), ``decoder`` (decord / PyAV), ``transforms`` (uint8 tensor transforms per split,
in the workers), ``device_transforms`` (normalisation and random erasing of uint8 batches on
the device), ``kinetics`` (the dataset), ``loader`` (samplers, collate, DataLoader),
``bad_videos`` (counting undecodable videos across workers), ``mixup`` (video MixUp/CutMix),
``config_check`` (the config choices defined here); the videos tests and benchmarks write, and
the loader benchmark, are in :mod:`stvit_video.bench`. decord and PyAV are imported only when a video is opened (or a worker starts),
and decord's global bridge is never set. Nothing here imports ``stvit_video.models``.
"""
from stvit_video.datasets.bad_videos import BadVideoCounter
from stvit_video.datasets.config_check import check_data_config
from stvit_video.datasets.device_transforms import DeviceTransform, build_device_transform
from stvit_video.datasets.kinetics import VideoClipDataset, VideoSample, build_dataset
from stvit_video.datasets.loader import VideoBatch, VideoLoader, collate_samples, construct_loader, set_loader_epoch
from stvit_video.datasets.mixup import VideoMixup, build_mixup

__all__ = [
    "BadVideoCounter", "DeviceTransform", "VideoBatch", "VideoClipDataset", "VideoLoader", "VideoMixup",
    "VideoSample", "build_dataset", "build_device_transform", "build_mixup", "check_data_config",
    "collate_samples", "construct_loader", "set_loader_epoch",
]
