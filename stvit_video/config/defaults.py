"""Default configuration: every behaviour of stvit-video is set by one of these keys.

Order of precedence (lowest first): these defaults -> a YAML file (with ``_BASE_``
inheritance) -> ``KEY VALUE`` pairs on the command line. Keys are grouped by subsystem as in
SlowFast; each has a one-line comment. Only keys that code reads belong here.
"""
from fvcore.common.config import CfgNode

_C = CfgNode()

# ---------------------------------------------------------------------------- #
# Training
# ---------------------------------------------------------------------------- #
_C.TRAIN = CfgNode()
# Run training.
_C.TRAIN.ENABLE = True
# Dataset family; "kinetics" reads SlowFast CSV lists or class folders.
_C.TRAIN.DATASET = "kinetics"
# Global mini-batch size (all GPUs of all nodes together).
_C.TRAIN.BATCH_SIZE = 64
# Evaluate on the val split every this many epochs.
_C.TRAIN.EVAL_PERIOD = 1
# Save a checkpoint every this many epochs.
_C.TRAIN.CHECKPOINT_PERIOD = 1
# Also save every this many iterations inside an epoch (0 = off); for long epochs, so a
# preempted job loses little. Only the newest mid-epoch checkpoint is kept.
_C.TRAIN.CHECKPOINT_PERIOD_ITERS = 0
# Gradient accumulation: optimizer step every this many batches (reaches the reference
# batch of SOLVER.REFERENCE_BATCH_SIZE on fewer GPUs).
_C.TRAIN.ACCUM_STEPS = 1
# Mixed precision on CUDA (autocast); CPU runs always train in fp32.
_C.TRAIN.MIXED_PRECISION = True
# Autocast dtype with TRAIN.MIXED_PRECISION: "bf16" (no loss scaling needed) or "fp16" (with a GradScaler).
_C.TRAIN.AMP_DTYPE = "bf16"
# Label smoothing of the training targets (also of the MixUp/CutMix soft targets).
_C.TRAIN.LABEL_SMOOTHING = 0.0
# Resume from the newest checkpoint in OUTPUT_DIR if there is one.
_C.TRAIN.AUTO_RESUME = True
# Initialise from this checkpoint file ("" = random init / STViT from scratch).
_C.TRAIN.CHECKPOINT_FILE_PATH = ""
# Format of TRAIN.CHECKPOINT_FILE_PATH: "native" (ours), "video_swin" (official Video Swin /
# mmaction, 3D), "swin2d" (ImageNet Swin, inflated) or "stvit_r2d" (released 2D STViT-R, inflated).
_C.TRAIN.CHECKPOINT_TYPE = "native"
# Fine-tuning on other classes: keep a fresh classifier when the checkpoint's does not fit
# (always the case for "swin2d"); otherwise a head mismatch is an error.
_C.TRAIN.CHECKPOINT_REINIT_HEAD = False

# ---------------------------------------------------------------------------- #
# Testing
# ---------------------------------------------------------------------------- #
_C.TEST = CfgNode()
# Run multi-view testing.
_C.TEST.ENABLE = True
# Dataset family for testing.
_C.TEST.DATASET = "kinetics"
# Global mini-batch size in views.
_C.TEST.BATCH_SIZE = 8
# Checkpoint to test ("" = the one TEST.CHECKPOINT_SELECTION picks in OUTPUT_DIR/checkpoints).
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Without TEST.CHECKPOINT_FILE_PATH: "best" (best.pyth, the best validation top-1, else
# last.pyth) or "last" (last.pyth, as the official Video Swin recipe tests).
_C.TEST.CHECKPOINT_SELECTION = "best"
# The list the test job evaluates: "test" (test.csv) or "val" (val.csv; the official Kinetics
# protocol, whose test set is unlabelled, reports the validation set).
_C.TEST.SPLIT = "test"
# Our checkpoints store their class names; a test list whose classnames.txt orders the same
# names differently is an error unless this is True (then the logits are reordered by name).
_C.TEST.REORDER_CLASSES = False
# Format of TEST.CHECKPOINT_FILE_PATH: "native" (ours: model, classes and test transform inside;
# its transform wins over the config) or a foreign layout as in TRAIN.CHECKPOINT_TYPE.
_C.TEST.CHECKPOINT_TYPE = "native"
# Without a checkpoint to test: test the model as training would start it (random weights, or
# TRAIN.CHECKPOINT_FILE_PATH loaded into MODEL.ARCH, e.g. a Swin converted to STViT before any
# fine-tuning) instead of stopping with an error.
_C.TEST.ALLOW_RANDOM_INIT = False
# How the softmax scores of a video's views combine: "sum" (= mean) or "max".
_C.TEST.ENSEMBLE_METHOD = "sum"
# Views that failed to decode: "skip" (score the video on its good views; none good = wrong)
# or "error" (stop the test).
_C.TEST.FAILED_VIEW_POLICY = "skip"
# Largest forward pass in views (bounds memory; 0 = the per-process loader batch).
_C.TEST.MAX_VIEWS_PER_BATCH = 0
# Where the per-view logits are saved, .npz or .pt ("" = OUTPUT_DIR/eval/results.npz).
_C.TEST.SAVE_RESULTS_PATH = ""
# Also test every view with its frames in a fixed random order and report that accuracy:
# the gap shows how much the model relies on motion.
_C.TEST.TEMPORAL_SHUFFLE_CHECK = False
# Other runs' report.json files shown beside this one in the report (e.g. the Swin baseline of
# an STViT run); a missing one is left out with a warning.
_C.TEST.COMPARE_WITH = []
# Clips per video, each centred in one of as many equal segments of the video (mmaction's
# SampleFrames(test_mode=True)); the 1-view headline is the centre clip x centre crop.
_C.TEST.NUM_ENSEMBLE_VIEWS = 4
# Spatial crops per clip: 1 = centre, 3 = left/centre/right along the long side.
_C.TEST.NUM_SPATIAL_CROPS = 3
# Pictures (Grad-CAM, semantic tokens) of this many most confused test videos, in eval/visualize and report.html.
_C.TEST.VISUALIZE = 0

# ---------------------------------------------------------------------------- #
# Data
# ---------------------------------------------------------------------------- #
_C.DATA = CfgNode()
# Folder holding train.csv / val.csv / test.csv (or class folders when no CSV exists).
_C.DATA.PATH_TO_DATA_DIR = ""
# Build a built-in data set into DATA.PATH_TO_DATA_DIR when it has no train.csv yet:
# "mini_kinetics" (python -m data_prep synthetic, then data_prep all); "" = never.
_C.DATA.GENERATE_IF_MISSING = ""
# Prefix joined to relative video paths in the CSV lists.
_C.DATA.PATH_PREFIX = ""
# Separator between path and label in a CSV line (parsed from the right).
_C.DATA.PATH_LABEL_SEPARATOR = " "
# Video decoder: "decord" or "pyav".
_C.DATA.DECODING_BACKEND = "decord"
# Frames per clip fed to the model.
_C.DATA.NUM_FRAMES = 32
# Temporal stride between sampled frames, in frames at DATA.TARGET_FPS (raw frames when it is 0).
_C.DATA.SAMPLING_RATE = 2
# Frame rate the sampling rate refers to; clips are mapped to each video's own fps (SlowFast).
# 0 = raw frames: every DATA.SAMPLING_RATE-th frame whatever the fps (the official Video Swin
# recipe, mmaction's SampleFrames).
_C.DATA.TARGET_FPS = 30
# Clip frames past the end of a video shorter than the clip: "loop" (start again from its first
# frame, as mmaction) or "repeat_last" (repeat the last frame).
_C.DATA.OUT_OF_BOUND = "loop"
# Per-channel mean and std of RGB values scaled to [0, 1].
_C.DATA.MEAN = [0.485, 0.456, 0.406]
_C.DATA.STD = [0.229, 0.224, 0.225]
# Range [min, max] of the random short-side scale in training; [0] is also the val short side.
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]
# Area range [min, max] (fractions) of an Inception-style random resized crop in training;
# non-empty replaces the short-side jitter above ([] = off).
_C.DATA.TRAIN_JITTER_SCALES_RELATIVE = []
# Aspect-ratio range [min, max] of the random resized crop.
_C.DATA.TRAIN_JITTER_ASPECT_RELATIVE = [0.75, 1.3333]
# Antialiased bilinear resizing in training when a resize shrinks. False as the references train
# (mmaction's cv2 bilinear, SlowFast's and pytorchvideo's F.interpolate); True costs about twice
# the resize time. Test frames are always antialiased (torchvision's presets).
_C.DATA.TRAIN_RESIZE_ANTIALIAS = False
# Horizontal flip (p = 0.5) in training; False for classes a mirror image changes
# ("moving left", "rotating clockwise": Something-Something, the built-in mini-Kinetics).
_C.DATA.RANDOM_FLIP = True
# Side of the square training crop.
_C.DATA.TRAIN_CROP_SIZE = 224
# Side of the square test crop (the short side is scaled to DATA.TEST_SHORT_SIDE first).
_C.DATA.TEST_CROP_SIZE = 224
# Short side of the test frames before cropping; 0 = DATA.TEST_CROP_SIZE (Video Swin: the 3 crops
# cover the whole short side). torchvision's Kinetics weights were measured at 256 with one centre crop.
_C.DATA.TEST_SHORT_SIDE = 0
# Input channels.
_C.DATA.INPUT_CHANNEL_NUM = 3
# Repeated sampling (MAE-ST, VideoMAE): each training item decodes one window of a video and
# returns this many clips, each with its own temporal offset (whole sampling steps) inside the
# window and its own augmentation. Counted in clips: an epoch is (videos / k) items, so epochs, the LR schedule and
# TRAIN.BATCH_SIZE mean the same number of clips as with 1; every video is seen once per k epochs.
_C.DATA.NUM_REPEATED_SAMPLES = 1
# Length of that decoded window as a multiple of the clip span (>= 1.0). 1.0 decodes what one
# clip needs, and the clips are the same frames with their own augmentations (VideoMAE); larger
# windows give the clips starts up to (window - 1) spans apart, at the cost of decoding more
# frames (README "Performance").
_C.DATA.REPEATED_SAMPLE_WINDOW = 1.0

# ---------------------------------------------------------------------------- #
# Data loader
# ---------------------------------------------------------------------------- #
_C.DATA_LOADER = CfgNode()
# Worker processes per GPU.
_C.DATA_LOADER.NUM_WORKERS = 8
# Pin host memory for faster host-to-device copies.
_C.DATA_LOADER.PIN_MEMORY = True
# Decode attempts of one video before another one is substituted (train/val) or its view is
# marked failed (test); also the most substitutes tried in a row before the run stops.
_C.DATA_LOADER.NUM_RETRIES = 10
# Keep worker processes alive between epochs (no re-fork, no re-import per epoch).
_C.DATA_LOADER.PERSISTENT_WORKERS = True
# Loader workers keep freed memory for reuse (glibc malloc; stvit_video/utils/cpu_malloc.py), on
# every device: each item allocates its decoded frames and clips anew (5-20 MB at 32 x 224), which
# glibc otherwise maps fresh and page-faults in, item after item (a decord item took 21-24 ms with
# reuse against 25-27 ms without). A worker's memory stays at its peak, about one item's buffers.
_C.DATA_LOADER.MALLOC_REUSE = True
# Training loader with persistent workers: each worker writes its batches into PREFETCH_FACTOR + 2
# shared-memory batch buffers of its own, allocated once and reused, instead of a new segment per
# batch (which torch zero-fills and the worker page-faults in: ~3.3 ms per 32 x 224 clip, 12% of
# a decord worker's time); the main process copies each batch out before the trainer sees it.
# Shared memory: workers x (PREFETCH_FACTOR + 2) batches, allocated up front (stvit_video/datasets/batch_slots.py).
_C.DATA_LOADER.REUSE_BATCH_MEMORY = True
# Batches each worker prepares ahead (uint8 batches are small; more hides decode-time jitter).
_C.DATA_LOADER.PREFETCH_FACTOR = 4
# Stop training when more than this fraction of the videos seen in an epoch failed to decode
# (a mostly broken data set should not train silently).
_C.DATA.MAX_BAD_VIDEO_FRACTION = 0.05

# ---------------------------------------------------------------------------- #
# Model (stvit_video/models/build.py maps these keys to constructor arguments)
# ---------------------------------------------------------------------------- #
_C.MODEL = CfgNode()
# Model variant from the registry (run_net.py --list-models), e.g. "swin3d_tiny" or
# "stvit_r_swin3d_tiny_perframe"; SWIN.* / STVIT.* keys left at None keep the variant's values.
_C.MODEL.ARCH = "stvit_r_swin3d_tiny_perframe"
# Number of classes of the classification head; 0 = as many as DATA.PATH_TO_DATA_DIR has
# (its classnames.txt, else its class folders), read when the job starts.
_C.MODEL.NUM_CLASSES = 400
# Dropout before the classifier.
_C.MODEL.HEAD_DROPOUT = 0.5
# Recompute each block's activations in the backward pass to save memory.
_C.MODEL.ACT_CHECKPOINT = False
# torch.compile the model for training and testing (CUDA; slow to start on the CPU).
_C.MODEL.COMPILE = False

# ---------------------------------------------------------------------------- #
# Video Swin backbone
# ---------------------------------------------------------------------------- #
_C.SWIN = CfgNode()
# Channels after the patch embedding (None = the variant's: 96 for Swin-T/S, 128 for Swin-B).
_C.SWIN.EMBED_DIM = None
# Blocks per stage (None = the variant's).
_C.SWIN.DEPTHS = None
# Attention heads per stage (None = the variant's).
_C.SWIN.NUM_HEADS = None
# Patch size (T, H, W) of the 3D patch embedding (None = the variant's: [2, 4, 4] for Video Swin).
_C.SWIN.PATCH_SIZE = None
# Attention window (T, H, W); clamped to the feature size (None = the variant's: [8, 7, 7]).
_C.SWIN.WINDOW_SIZE = None
# Convolutional stem widths replacing the linear patch embedding, one 3x3x3 conv each
# (None = the variant's; [] = the official patch embedding).
_C.SWIN.STEM_CHANNELS = None
# Linear-layer initialisation: "swin" (trunc-normal 0.02, official) or "pytorch" (None = the variant's).
_C.SWIN.WEIGHT_INIT = None
# Hidden width of the MLPs relative to the channels.
_C.SWIN.MLP_RATIO = 4.0
# Stochastic depth rate of the last block (linear from 0).
_C.SWIN.DROP_PATH_RATE = 0.1
# Bias in the q/k/v projections.
_C.SWIN.QKV_BIAS = True
# LayerNorm after the patch embedding (True in the official Kinetics models).
_C.SWIN.PATCH_NORM = True
# Dropout after attention and MLP projections.
_C.SWIN.DROP_RATE = 0.0
# Dropout on attention weights.
_C.SWIN.ATTN_DROP_RATE = 0.0

# ---------------------------------------------------------------------------- #
# STViT semantic tokens (stvit_* variants only; None = the variant's value)
# ---------------------------------------------------------------------------- #
_C.STVIT = CfgNode()
# "perframe" (tokens per temporal slice, as in the paper) or "spatiotemporal".
_C.STVIT.MODE = None
# STViT-R: restore the image tokens after every unit; False = plain STViT (later stages
# run on the semantic token grid).
_C.STVIT.RECOVERY = None
# Stage (0-based) whose last 6 x NUM_UNITS blocks become STViT units.
_C.STVIT.STAGE = None
# Units of 6 blocks (window, 2 x STGM, local, global, recovery); Swin-T: 1, Swin-S/B: up to 3.
_C.STVIT.NUM_UNITS = None
# Semantic tokens per window side (s x s tokens per 7 x 7 window).
_C.STVIT.SAMPLE_WINDOW_SIZE = None
# Feature slices pooled into one semantic slice (spatiotemporal mode; 1 in perframe mode).
_C.STVIT.TEMPORAL_POOL = None
# Learnable global centres added to the STGM layer-2 queries.
_C.STVIT.USE_GLOBAL = None
# Initial value of the layer scales of the new blocks.
_C.STVIT.LAYER_SCALE_INIT = None

# ---------------------------------------------------------------------------- #
# ToMe token merging (tome_* variants only; None = the variant's value)
# ---------------------------------------------------------------------------- #
_C.TOME = CfgNode()
# Fraction of each window's tokens merged in every branch of the merging stage's blocks, in [0, 1).
_C.TOME.MERGE_RATIO = None

# ---------------------------------------------------------------------------- #
# Optimizer and schedule
# ---------------------------------------------------------------------------- #
_C.SOLVER = CfgNode()
# Learning rate at the global batch SOLVER.REFERENCE_BATCH_SIZE (scaled by SOLVER.LR_SCALING).
_C.SOLVER.BASE_LR = 1e-3
# Global batch (TRAIN.BATCH_SIZE x TRAIN.ACCUM_STEPS) that SOLVER.BASE_LR was tuned for.
_C.SOLVER.REFERENCE_BATCH_SIZE = 64
# "linear": LR = BASE_LR x actual global batch / REFERENCE_BATCH_SIZE; "none": BASE_LR as is.
_C.SOLVER.LR_SCALING = "linear"
# Epochs of training.
_C.SOLVER.MAX_EPOCH = 30
# "mmcv_cosine" (the official Video Swin schedule: cosine over all epochs, stepped per epoch,
# the linear warm-up multiplied over its start) or "warmup_cosine" (timm: linear warm-up to
# the LR, then a smooth cosine over the remaining epochs); see stvit_video/engine/schedule.py.
_C.SOLVER.LR_POLICY = "mmcv_cosine"
# Epochs of linear warm-up (may be fractional).
_C.SOLVER.WARMUP_EPOCHS = 2.5
# Warm-up starts at this fraction of the LR (0.1 as mmcv's warm-up in the Video Swin recipe).
_C.SOLVER.WARMUP_START_FACTOR = 0.1
# The cosine ends at this fraction of the LR.
_C.SOLVER.COSINE_END_FACTOR = 0.0
# Clip the global gradient norm to this value (0 = off, as in the Video Swin recipe).
_C.SOLVER.CLIP_GRAD_NORM = 0.0
# Weight decay (which parameters it reaches: SOLVER.PARAM_GROUP_RULE).
_C.SOLVER.WEIGHT_DECAY = 0.02
# "no_decay_1d" (timm, the released STViT code: no decay on norms, biases, layer scales and bias
# tables) or "video_swin" (the official Video Swin configs as mmcv reads them: only the
# relative-position bias tables are exempt, and they keep LR multiplier 1.0); engine/optimizer.py.
_C.SOLVER.PARAM_GROUP_RULE = "no_decay_1d"
# Optimizer: "adamw" or "sgd".
_C.SOLVER.OPTIMIZING_METHOD = "adamw"
# SGD momentum / AdamW beta1.
_C.SOLVER.MOMENTUM = 0.9
# LR multiplier of pretrained backbone parameters (0.1 when fine-tuning Video Swin).
_C.SOLVER.BACKBONE_LR_MULT = 1.0
# LR multiplier of the new STViT blocks (STGM, S-only, recovery, global centres); a separate
# group so BACKBONE_LR_MULT never slows these freshly initialised layers.
_C.SOLVER.STGM_LR_MULT = 1.0

# ---------------------------------------------------------------------------- #
# Augmentation
# ---------------------------------------------------------------------------- #
_C.AUG = CfgNode()
# Apply RandAugment / random erasing in training.
_C.AUG.ENABLE = False
# Augmented clips per decoded video in training (repeated augmentation; counts in TRAIN.BATCH_SIZE).
_C.AUG.NUM_SAMPLE = 1
# RandAugment policy, timm-style "rand-m<magnitude>-n<ops>-mstd<std>" ("" = off).
_C.AUG.AA_TYPE = "rand-m7-n4-mstd0.5-inc1"
# Probability of random erasing (the same box in every frame; 0 = off).
_C.AUG.RE_PROB = 0.25
# Fill of the erased box: "pixel" (per-pixel noise), "rand" (per-channel noise) or "const" (zeros).
_C.AUG.RE_MODE = "pixel"

# ---------------------------------------------------------------------------- #
# MixUp / CutMix
# ---------------------------------------------------------------------------- #
_C.MIXUP = CfgNode()
# Apply MixUp/CutMix in training.
_C.MIXUP.ENABLE = False
# MixUp Beta(alpha, alpha) parameter (0 = MixUp off).
_C.MIXUP.ALPHA = 0.8
# CutMix Beta(alpha, alpha) parameter (0 = CutMix off).
_C.MIXUP.CUTMIX_ALPHA = 1.0
# Probability of mixing a batch.
_C.MIXUP.PROB = 1.0
# Probability of CutMix instead of MixUp when both are on.
_C.MIXUP.SWITCH_PROB = 0.5

# ---------------------------------------------------------------------------- #
# TensorBoard
# ---------------------------------------------------------------------------- #
_C.TENSORBOARD = CfgNode()
# Write TensorBoard event files to OUTPUT_DIR/tensorboard.
_C.TENSORBOARD.ENABLE = False

# ---------------------------------------------------------------------------- #
# Distributed (torchrun / env:// or SlowFast-style NUM_GPUS spawn)
# ---------------------------------------------------------------------------- #
_C.DIST = CfgNode()
# "auto" = nccl on CUDA, gloo on the CPU.
_C.DIST.BACKEND = "auto"
# Rendezvous for NUM_GPUS > 1 without torchrun ("" = tcp://127.0.0.1:<free port>, one node);
# torchrun's environment (env://) is used whenever it is set.
_C.DIST.INIT_METHOD = ""
# Seconds the start-up check (and any collective) may wait before the run fails with the rank,
# world size and init method named. Rank-0-only work (writing a checkpoint of ~1 GB for Swin-B,
# the report, the built-in data) happens while the other ranks wait in a collective, so keep it
# long (PyTorch's default, 30 min); a slower rank-0 step is logged with a warning.
_C.DIST.TIMEOUT_S = 1800

# ---------------------------------------------------------------------------- #
# Run
# ---------------------------------------------------------------------------- #
# GPUs per node (0 = CPU).
_C.NUM_GPUS = 1
# Number of nodes.
_C.NUM_SHARDS = 1
# Index of this node.
_C.SHARD_ID = 0
# Where checkpoints, logs and the merged config go.
_C.OUTPUT_DIR = "./output"
# Seed of every random generator.
_C.RNG_SEED = 0
# Log training statistics every this many iterations.
_C.LOG_PERIOD = 10
# CPU runs (NUM_GPUS 0, predict on the CPU): keep freed tensor memory in the process for reuse
# (glibc malloc; see stvit_video/utils/cpu_malloc.py). Without it every large activation is a
# fresh mmap, page-faulted in 4 KiB at a time: Swin-T inference at batch 8 ran 1.33x slower, a
# training step 1.9x. The price is a higher resident peak (+50-60%), kept until the process ends.
_C.CPU_MALLOC_REUSE = True


def get_cfg_defaults() -> CfgNode:
    """Return a fresh, mutable copy of the defaults."""
    return _C.clone()
