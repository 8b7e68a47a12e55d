"""Kinetics-style video data: lists -> clip sampling -> decoding -> transforms -> loaders.

Modules, one job each: ``video_list`` (CSV / class folders), ``clip_sampling`` (frame
indices), ``decoder`` (decord / PyAV), ``transforms`` (tensor transforms per split),
``kinetics`` (the dataset), ``loader`` (samplers, collate, DataLoader), ``bad_videos``
(counting undecodable videos across workers), ``mixup`` (video MixUp/CutMix), ``synthetic``
(small real videos for tests and benchmarks). decord and PyAV are imported only when a video
is opened, and decord's global bridge is never set. Nothing here imports ``stvit_video.models``.
"""
from stvit_video.datasets.bad_videos import BadVideoCounter
from stvit_video.datasets.kinetics import VideoClipDataset, VideoSample, build_dataset
from stvit_video.datasets.loader import VideoBatch, collate_samples, construct_loader, set_loader_epoch
from stvit_video.datasets.mixup import VideoMixup, build_mixup

__all__ = [
    "BadVideoCounter", "VideoBatch", "VideoClipDataset", "VideoMixup", "VideoSample", "build_dataset",
    "build_mixup", "collate_samples", "construct_loader", "set_loader_epoch",
]
