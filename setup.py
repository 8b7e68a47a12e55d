"""Installs the ``stvit_video`` and ``data_prep`` packages.

Dependencies are ranges, never pins: GPU users bring their own torch build.
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def _version() -> str:
    namespace: dict = {}
    exec((ROOT / "stvit_video" / "version.py").read_text(), namespace)
    return namespace["__version__"]


setup(
    name="stvit-video",
    version=_version(),
    description="STViT semantic-token Video Swin Transformers for Kinetics: trainer, multi-view tester, reports",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["stvit_video", "stvit_video.*", "data_prep", "data_prep.*"])
    + ["stvit_video.configs"],
    # the repository keeps configs/ at the top; a wheel carries them as stvit_video/configs
    package_dir={"stvit_video.configs": "configs"},
    package_data={"stvit_video.configs": ["*.yaml", "*/*.yaml"]},
    install_requires=[
        "torch>=2.2",
        "torchvision",
        "pytorchvideo>=0.1.5",
        "decord>=0.6",
        "av",
        "timm>=1.0",
        "fvcore",
        "simplejson",
        "pyyaml",
        "tqdm",
        "tensorboard",
        "matplotlib",
        "numpy",
    ],
    # the suite builds a wheel without build isolation: setuptools >= 70.1 has bdist_wheel built in;
    # onnx: tools/export.py --format onnx (onnxscript holds torch.onnx's translations), also tested
    extras_require={"test": ["pytest>=7", "setuptools>=70.1", "onnx", "onnxruntime", "onnxscript"],
                    "onnx": ["onnx", "onnxruntime", "onnxscript"]},
    entry_points={"console_scripts": ["stvit-run=stvit_video.cli:main", "stvit-prep=data_prep.cli:main",
                                     "stvit-predict=stvit_video.predict_cli:main",
                                     "stvit-export=stvit_video.export_cli:main",
                                     "stvit-visualize=stvit_video.visualize_cli:main"]},
)
