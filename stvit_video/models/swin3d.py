"""Video Swin Transformer (3D shifted windows) for video classification.

Paper: "Video Swin Transformer", Liu et al., CVPR 2022 (arXiv 2106.13230).

Parameter and buffer names follow the official Video Swin backbone (``patch_embed.proj``,
``layers.{i}.blocks.{j}.attn.qkv``, ``layers.{i}.downsample.reduction``, ``norm``), so its
Kinetics checkpoints load with strict key matching after :mod:`stvit_video.models.weights`
strips the mmaction wrapping. Differences from the official code, all numerically neutral on
its checkpoints:

- attention runs through ``F.scaled_dot_product_attention`` with the relative position bias
  and the shifted-window mask folded into one additive mask;
- the shifted-window mask is built from the padded input of each forward pass (cached per
  shape), never from a resolution fixed at construction;
- when a window is clamped to a small feature map, the relative position index is computed
  for the clamped window (the official code slices the full index, which is only right when
  the temporal axis alone is clamped, the only case its Kinetics settings hit);
- ``relative_position_index`` is a non-persistent buffer (recomputed, not loaded).

Data flow::

    video (B, 3, T, H, W)
      -> PatchEmbed3D            (B, C, T/2, H/4, W/4)
      -> 4 x SwinStage3D          channels C, 2C, 4C, 8C; H and W halved between stages
      -> LayerNorm               (B, 8C, T', H', W')   forward_features
      -> I3DHead                 (B, num_classes)       forward_head
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from stvit_video.utils.errors import InvalidArgument


# Linear-layer initialisations: "swin" = the official trunc-normal(std 0.02), zero bias;
# "pytorch" = PyTorch's default (Kaiming-uniform), which trains the small from-scratch demo
# models several times faster on CPU (the CPU demo's note in configs/demo).
WEIGHT_INITS = ("swin", "pytorch")

__all__ = [
    "WEIGHT_INITS",
    "StageReplacement",
    "SwinTransformer3D",
    "SwinTransformerBlock3D",
    "SwinStage3D",
    "StageSpec",
    "check_swin_args",
    "WindowAttention3D",
    "PatchEmbed3D",
    "PatchMerging3D",
    "I3DHead",
    "in_windows",
    "window_partition",
    "window_reverse",
    "effective_window",
    "shifted_window_mask",
]

Size3 = tuple[int, int, int]

# Additive score of token pairs from different sub-windows of a shifted window; the official
# Video Swin uses -100 (not -inf), and checkpoints were trained with it.
SHIFT_MASK_VALUE = -100.0


# ----------------------------------------------------------------------------------------- #
# Window helpers
# ----------------------------------------------------------------------------------------- #
def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """Cut a feature map into non-overlapping windows.

    Args:
        x: (B, D, H, W, C) with D, H, W multiples of ``window``.
        window: (wd, wh, ww).

    Returns:
        (B * nW, wd * wh * ww, C), windows in raster order of (D/wd, H/wh, W/ww), batch-major.
    """
    B, D, H, W, C = x.shape
    wd, wh, ww = window
    x = x.view(B, D // wd, wd, H // wh, wh, W // ww, ww, C)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, C)


def window_reverse(windows: torch.Tensor, window: Size3, B: int, D: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wd * wh * ww, C) -> (B, D, H, W, C)."""
    wd, wh, ww = window
    x = windows.view(B, D // wd, H // wh, W // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(B, D, H, W, -1)


def in_windows(x: torch.Tensor, window: Size3, shift: Size3,
               fn: Callable[[torch.Tensor, Size3], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn`` to the (shifted) windows of a feature map, as a Swin block's attention does.

    (B, D, H, W, C) is zero-padded to whole windows, rolled by ``-shift``, cut into
    (B * nW, N, C) windows; ``fn(windows, padded)`` (``padded`` = (Dp, Hp, Wp)) returns
    (B * nW, N, C'), which is put back, rolled by ``shift`` and cropped: (B, D, H, W, C').
    """
    B, D, H, W, _ = x.shape
    x = F.pad(x, (0, 0, 0, -W % window[2], 0, -H % window[1], 0, -D % window[0]))
    _, Dp, Hp, Wp, _ = x.shape
    if any(shift):
        x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    x = window_reverse(fn(window_partition(x, window), (Dp, Hp, Wp)), window, B, Dp, Hp, Wp)
    if any(shift):
        x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
    return x[:, :D, :H, :W, :]


def effective_window(size: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> tuple[Size3, Size3]:
    """Clamp window and shift to the feature size, as the official Video Swin does.

    Along an axis where the feature is no larger than the window, the window shrinks to the
    feature size and the shift is dropped (one window covers the axis).

    Returns:
        (window, shift) actually used for a feature map of ``size`` = (D, H, W).
    """
    win, sh = list(window), list(shift)
    for i, n in enumerate(size):
        if n <= window[i]:
            win[i], sh[i] = n, 0
    return tuple(win), tuple(sh)  # type: ignore[return-value]


def cached_tensors(fn):
    """``functools.lru_cache`` for functions that build constant tensors (masks, indices).

    The tensors are always built outside inference mode: one cached while a model is tested
    under ``torch.inference_mode`` must still be usable when the same process trains later.
    Under ``torch.compile`` the function is traced as it is (its inputs are static shapes, so
    the result is a constant of the graph); the cache would only be bypassed with a warning.
    """
    @functools.lru_cache(maxsize=64)
    def build(*args):
        with torch.inference_mode(False):
            return fn(*args)

    @functools.wraps(fn)
    def lookup(*args):
        if torch.compiler.is_compiling():
            return fn(*args)
        return build(*args)

    lookup.cache_clear = build.cache_clear  # type: ignore[attr-defined]
    lookup.cache_info = build.cache_info  # type: ignore[attr-defined]
    return lookup


@cached_tensors
def _shifted_window_mask_cached(
    padded: Size3, window: Size3, shift: Size3, device: torch.device
) -> torch.Tensor:
    region = torch.zeros((1, *padded, 1), device=device)
    label = 0
    slices = [
        (slice(0, -w), slice(-w, -s), slice(-s, None)) for w, s in zip(window, shift)
    ]
    for d in slices[0]:
        for h in slices[1]:
            for w in slices[2]:
                region[:, d, h, w, :] = label
                label += 1
    labels = window_partition(region, window).squeeze(-1)  # (nW, N)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)  # (nW, N, N)
    return torch.zeros_like(diff).masked_fill(diff != 0, SHIFT_MASK_VALUE)


def shifted_window_mask(padded: Sequence[int], window: Sequence[int], shift: Sequence[int],
                        device: torch.device) -> torch.Tensor:
    """Additive mask that keeps attention inside the sub-windows of a cyclically shifted map.

    After ``torch.roll`` by ``-shift``, a window at the map edge holds tokens from up to
    2 x 2 x 2 regions that were not neighbours; pairs from different regions get -100.

    Args:
        padded: (Dp, Hp, Wp) padded feature size, multiples of ``window``.
        window, shift: effective window and shift (see :func:`effective_window`).

    Returns:
        (nW, N, N) float mask with 0 / -100 entries, N = prod(window). Cached per shape.
    """
    return _shifted_window_mask_cached(tuple(padded), tuple(window), tuple(shift), torch.device(device))


@cached_tensors
def relative_position_index(window: Size3, table_window: Size3) -> torch.Tensor:
    """Index into a relative-position bias table for every token pair of a window.

    Args:
        window: window actually used, (wd, wh, ww), each <= the table's window.
        table_window: window the table was built for; the table has
            (2wd-1)(2wh-1)(2ww-1) rows.

    Returns:
        (N, N) long tensor, N = wd * wh * ww, raster order of the window.
    """
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N), each in (-w, w)
    td, th, tw = table_window
    rel = rel + torch.tensor([td - 1, th - 1, tw - 1]).view(3, 1, 1)
    return rel[0] * (2 * th - 1) * (2 * tw - 1) + rel[1] * (2 * tw - 1) + rel[2]


# ----------------------------------------------------------------------------------------- #
# Layers
# ----------------------------------------------------------------------------------------- #
class PatchEmbed3D(nn.Module):
    """3D patches -> tokens, then LayerNorm.

    (B, C_in, T, H, W) -> (B, C, ceil(T/pt), ceil(H/ph), ceil(W/pw)); inputs that are not
    multiples of the patch are zero-padded at the end, as in the official model.

    ``stem_channels`` empty: one linear projection of non-overlapping patches (Video Swin).
    Otherwise a convolutional stem (Xiao et al., "Early Convolutions Help Transformers See
    Better", NeurIPS 2021): one 3x3x3 conv + BatchNorm + ReLU per entry, each halving H and
    W; T is halved log2(pt) times right after the first layer, which sees every frame (motion
    between neighbouring frames; halving T later trained the demo model markedly slower);
    then a 1x1x1 projection to ``embed_dim``. It overlaps patches and adds nonlinearity before
    the first attention, which a transformer trained from scratch on little data needs to pick
    up motion quickly (the CPU demo); it does not load official Video Swin weights.
    """

    def __init__(self, *, patch_size: Size3 = (2, 4, 4), in_chans: int = 3, embed_dim: int = 96,
                 patch_norm: bool = True, stem_channels: Sequence[int] = ()) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        if stem_channels:
            layers: list[nn.Module] = []
            channels, halvings = in_chans, int(math.log2(self.patch_size[0]))
            first = min(1, len(stem_channels) - halvings)  # the first layer sees every frame when it can
            for i, width in enumerate(stem_channels):
                stride_t = 2 if first <= i < first + halvings else 1
                layers += [nn.Conv3d(channels, width, kernel_size=3, stride=(stride_t, 2, 2), padding=1, bias=False),
                           nn.BatchNorm3d(width), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.Conv3d(channels, embed_dim, kernel_size=1))
            self.proj = nn.Sequential(*layers)
        else:
            self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, T, H, W = x.shape
        pt, ph, pw = self.patch_size
        x = F.pad(x, (0, -W % pw, 0, -H % ph, 0, -T % pt))
        x = self.proj(x)  # (B, C, T', H', W')
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return x


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows, with a relative position bias.

    The bias (and, for shifted windows, the mask) is folded into one additive mask for
    ``F.scaled_dot_product_attention`` on 4-D q/k/v (5-D inputs would silently take the
    unfused math path):

    - unshifted windows: q/k/v (B * nW, heads, N, d), mask (1, heads, N, N);
    - shifted windows: q/k/v (B, nW * heads, N, d), mask (1, nW * heads, N, N), so the
      per-window mask broadcasts over the batch without being copied B times.
    """

    def __init__(self, *, dim: int, window_size: Size3, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"WindowAttention3D: dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.attn_drop = attn_drop
        wd, wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads))
        self.register_buffer(
            "relative_position_index", relative_position_index(self.window_size, self.window_size).clone(),
            persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fused_attn = True
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self, window: Size3) -> torch.Tensor:
        """Bias of every token pair of a (possibly clamped) window: (heads, N, N)."""
        if tuple(window) == self.window_size:
            index = self.relative_position_index
        else:
            index = relative_position_index(tuple(window), self.window_size).to(
                self.relative_position_bias_table.device)
        N = index.shape[0]
        # contiguous (heads, N, N): adding the shift mask then yields a contiguous (nW, heads, N, N)
        # that reshapes for SDPA without a copy (a permuted view made the add write a permuted
        # layout, and the reshape copied the nW * heads * N^2 mask once more)
        return self.relative_position_bias_table[index.reshape(-1)].view(N, N, -1).permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, window: Size3, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: (B * nW, N, C) window tokens, N = prod(window).
            window: the (clamped) window these tokens come from.
            mask: (nW, N, N) additive shifted-window mask, or None.

        Returns:
            (B * nW, N, C).
        """
        BnW, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(BnW, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B*nW, h, N, d)
        bias = self.relative_position_bias(window).unsqueeze(0)  # (1, h, N, N)
        if mask is not None:
            nW = mask.shape[0]
            bias = (bias + mask.unsqueeze(1).to(bias.dtype)).reshape(1, nW * h, N, N)
            q, k, v = (t.reshape(BnW // nW, nW * h, N, d) for t in (q, k, v))
        dropout = self.attn_drop if self.training else 0.0
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout,
                                                 scale=self.scale)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias
            attn = F.dropout(attn.softmax(dim=-1), p=dropout, training=self.training)
            out = attn @ v
        out = out.reshape(BnW, h, N, d).transpose(1, 2).reshape(BnW, N, C)
        return self.proj_drop(self.proj(out))


class SwinTransformerBlock3D(nn.Module):
    """Pre-norm block: (shifted) window attention + MLP, each with a residual.

    (B, D, H, W, C) -> (B, D, H, W, C). The map is zero-padded to whole windows after the
    first norm (as in the official model) and cropped back afterwards.
    """

    def __init__(self, *, dim: int, num_heads: int, window_size: Size3 = (8, 7, 7),
                 shift_size: Size3 = (0, 0, 0), mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        for i, (w, s) in enumerate(zip(window_size, shift_size)):
            if not 0 <= s < w:
                raise ValueError(f"SwinTransformerBlock3D: shift {tuple(shift_size)} must be in [0, window) "
                                 f"for window {tuple(window_size)} (axis {i})")
        self.window_size = tuple(window_size)
        self.shift_size = tuple(shift_size)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim=dim, window_size=self.window_size, num_heads=num_heads,
                                      qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        self.grad_checkpointing = False

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        window, shift = effective_window(x.shape[1:4], self.window_size, self.shift_size)

        def attend(windows: torch.Tensor, padded: Size3) -> torch.Tensor:
            mask = shifted_window_mask(padded, window, shift, windows.device) if any(shift) else None
            return self.attn(windows, window, mask)  # (B*nW, N, C)

        return in_windows(self.norm1(x), window, shift, attend)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._attention(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> (B, D, H, W, C)."""
        if self.grad_checkpointing and x.requires_grad and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class PatchMerging3D(nn.Module):
    """Concatenate 2 x 2 spatial neighbours, norm, and project 4C -> 2C.

    (B, D, H, W, C) -> (B, D, ceil(H/2), ceil(W/2), 2C); odd H/W are zero-padded.
    """

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, H, W, _ = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        # channel order x0, x1, x2, x3 as in the official model, so reduction weights match
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


@dataclass(frozen=True)
class StageSpec:
    """Everything that shapes one stage, shared by the Swin stage and any stage that replaces it.

    Attributes:
        dim: channels C of the stage.
        depth: number of blocks.
        num_heads: attention heads.
        window_size: (T, H, W) attention window.
        mlp_ratio, qkv_bias, drop, attn_drop: as in :class:`SwinTransformerBlock3D`.
        drop_path: stochastic depth rate of each block (``depth`` values).
        downsample: end the stage with a :class:`PatchMerging3D`.
    """

    dim: int
    depth: int
    num_heads: int
    window_size: Size3
    mlp_ratio: float
    qkv_bias: bool
    drop: float
    attn_drop: float
    drop_path: tuple[float, ...]
    downsample: bool

    def __post_init__(self) -> None:
        if len(self.drop_path) != self.depth:
            raise ValueError(f"StageSpec: {len(self.drop_path)} drop-path rates for {self.depth} blocks")

    @property
    def shift_size(self) -> Size3:
        """Shift of the shifted-window blocks: half the window."""
        return tuple(w // 2 for w in self.window_size)  # type: ignore[return-value]

    def swin_block(self, index: int, shifted: bool) -> "SwinTransformerBlock3D":
        """Block ``index`` of the stage as a Swin block, with or without the window shift."""
        return SwinTransformerBlock3D(
            dim=self.dim, num_heads=self.num_heads, window_size=self.window_size,
            shift_size=self.shift_size if shifted else (0, 0, 0), mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias, drop=self.drop, attn_drop=self.attn_drop, drop_path=self.drop_path[index])

    def merging(self) -> Optional["PatchMerging3D"]:
        """The patch merging that ends the stage, or None for the last stage."""
        return PatchMerging3D(dim=self.dim) if self.downsample else None


class SwinStage3D(nn.Module):
    """One stage: ``depth`` blocks alternating regular and shifted windows, then merging.

    (B, D, H, W, C) -> (B, D, H', W', C') with H' = ceil(H/2), C' = 2C if it downsamples.
    """

    def __init__(self, spec: StageSpec, blocks: Optional[Sequence[nn.Module]] = None) -> None:
        """``blocks``: the stage's blocks instead of the spec's Swin blocks (same state-dict keys)."""
        super().__init__()
        self.blocks = nn.ModuleList(blocks if blocks is not None else
                                    [spec.swin_block(j, shifted=j % 2 == 1) for j in range(spec.depth)])
        self.downsample = spec.merging()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> (B, D, H', W', C')."""
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class I3DHead(nn.Module):
    """I3D-style classifier: global 3D average pool, dropout, linear.

    (B, C, T, H, W) -> (B, num_classes); the pooled features with ``pre_logits``.
    """

    def __init__(self, *, in_features: int, num_classes: int, dropout: float = 0.5,
                 init_std: Optional[float] = 0.01) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.init_std = init_std
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, ``init_std``) weights and zero bias (mmaction's I3D head); ``init_std``
        None: PyTorch's default ``nn.Linear`` initialisation."""
        if isinstance(self.fc, nn.Linear):
            if self.init_std is None:
                self.fc.reset_parameters()
                return
            nn.init.normal_(self.fc.weight, std=self.init_std)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3, 4))  # (B, C)
        if pre_logits:
            return x
        return self.fc(self.dropout(x))


# ----------------------------------------------------------------------------------------- #
# Model
# ----------------------------------------------------------------------------------------- #
def check_swin_args(*, embed_dim: int, depths: Sequence[int], num_heads: Sequence[int],
                    patch_size: Sequence[int], window_size: Sequence[int], stem_channels: Sequence[int] = (),
                    weight_init: str = "swin") -> None:
    """Validate the shape arguments of :class:`SwinTransformer3D` without building it.

    Raises:
        InvalidArgument: naming the argument (a builder turns it into the config key).
    """
    def bad(arg: str, value: object, why: str) -> InvalidArgument:
        return InvalidArgument("SwinTransformer3D", arg, value, why)

    if not (isinstance(embed_dim, int) and embed_dim >= 1):
        raise bad("embed_dim", embed_dim, "must be an integer >= 1")
    depths, num_heads = tuple(depths), tuple(num_heads)
    if not depths or not all(isinstance(d, int) and d >= 1 for d in depths):
        raise bad("depths", depths, "needs >= 1 stage, each of >= 1 block")
    if len(num_heads) != len(depths):
        raise bad("num_heads", num_heads, f"needs one entry per stage of depths {depths}")
    for i, h in enumerate(num_heads):
        dim = embed_dim * 2**i
        if not (isinstance(h, int) and h >= 1 and dim % h == 0):
            raise bad("num_heads", num_heads, f"stage {i} has {dim} channels, not divisible by {h} heads")
    for arg, value in (("patch_size", tuple(patch_size)), ("window_size", tuple(window_size))):
        if len(value) != 3 or not all(isinstance(v, int) and v >= 1 for v in value):
            raise bad(arg, value, "must be three integers >= 1 (T, H, W)")
    stem_channels, (pt, ph, pw) = tuple(stem_channels), tuple(patch_size)
    if stem_channels:
        if not all(isinstance(c, int) and c >= 1 for c in stem_channels):
            raise bad("stem_channels", stem_channels, "must be integers >= 1 (one conv layer each)")
        n = len(stem_channels)
        if ph != 2**n or pw != 2**n or pt & (pt - 1) or pt > 2**n:
            raise bad("patch_size", tuple(patch_size), f"with {n} stem layers (stem_channels {stem_channels}) "
                      f"must be (T, {2**n}, {2**n}) with T a power of two <= {2**n}: each layer halves H and W")
    if weight_init not in WEIGHT_INITS:
        raise bad("weight_init", weight_init, f"must be one of {', '.join(WEIGHT_INITS)}")


class StageReplacement(Protocol):
    """What can replace one stage of :class:`SwinTransformer3D` (STViT's
    :class:`~stvit_video.models.stvit.STViTConfig` and ToMe's
    :class:`~stvit_video.models.tome.ToMeConfig` are two): it names its stage, checks that it
    fits the backbone, and builds the stage's module from the stage's spec."""

    stage: int

    def check_fits(self, *, depths: Sequence[int], window_size: Sequence[int]) -> None: ...

    def build_stage(self, spec: "StageSpec", *, feature_side: int) -> nn.Module: ...


class SwinTransformer3D(nn.Module):
    """Video Swin Transformer classifier with the timm model interface, optionally with STViT
    semantic tokens or ToMe token merging in one stage.

    Args:
        num_classes: classes of the head (0 = no classifier, features only).
        in_chans: input channels.
        patch_size: (T, H, W) patch of the 3D patch embedding.
        embed_dim: channels of stage 1 (doubled at each later stage).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: (T, H, W) attention window, clamped to small feature maps.
        mlp_ratio: MLP hidden width / channels.
        qkv_bias: bias in the q/k/v projections.
        patch_norm: LayerNorm after the patch embedding.
        drop_rate: dropout after attention/MLP projections.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth of the last block, linear from 0 over all blocks.
        head_dropout: dropout before the classifier.
        stvit: a :class:`StageReplacement` (STViT's semantic tokens,
            :class:`stvit_video.models.stvit.STViTConfig`) for stage ``stvit.stage``, which it
            builds; None = plain Video Swin.
        tome: a :class:`StageReplacement` merging tokens in stage ``tome.stage``
            (:class:`stvit_video.models.tome.ToMeConfig`, the ToMe baseline); None = no merging.
            Exclusive with ``stvit``.
        img_size: training crop side; sizes what the STViT stage learns per position (its
            global centres); any other crop works at run time.
        stem_channels: widths of a convolutional stem replacing the linear patch embedding
            (see :class:`PatchEmbed3D`); empty = the official patch embedding.
        weight_init: initialisation of the linear layers, one of :data:`WEIGHT_INITS`.
    """

    def __init__(self, *, num_classes: int = 400, in_chans: int = 3, patch_size: Size3 = (2, 4, 4),
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: Size3 = (8, 7, 7),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, patch_norm: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 head_dropout: float = 0.5, stvit: Optional[StageReplacement] = None,
                 img_size: int = 224, stem_channels: Sequence[int] = (), weight_init: str = "swin",
                 tome: Optional[StageReplacement] = None) -> None:
        super().__init__()
        check_swin_args(embed_dim=embed_dim, depths=depths, num_heads=num_heads, patch_size=patch_size,
                        window_size=window_size, stem_channels=stem_channels, weight_init=weight_init)
        if stvit is not None and tome is not None:
            raise InvalidArgument("SwinTransformer3D", "tome", tome, "a model has semantic tokens (stvit) or "
                                  "token merging (tome), not both; set one of them to None")
        replacement = stvit if stvit is not None else tome
        if replacement is not None:
            replacement.check_fits(depths=tuple(depths), window_size=tuple(window_size))
        self.num_classes = num_classes
        self.depths = tuple(depths)
        self.window_size = tuple(window_size)
        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.num_features = embed_dim * 2 ** (self.num_layers - 1)
        self.stvit = stvit
        self.tome = tome
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed3D(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                                        patch_norm=patch_norm, stem_channels=stem_channels)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        side = math.ceil(img_size / patch_size[1])  # feature side at the training crop, per stage
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            spec = StageSpec(
                dim=embed_dim * 2**i, depth=depths[i], num_heads=num_heads[i], window_size=self.window_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate,
                drop_path=tuple(dpr[sum(depths[:i]):sum(depths[:i + 1])]), downsample=i < self.num_layers - 1)
            if replacement is not None and i == replacement.stage:
                self.layers.append(replacement.build_stage(spec, feature_side=side))
            else:
                self.layers.append(SwinStage3D(spec))
            side = math.ceil(side / 2)
        self.norm = nn.LayerNorm(self.num_features)
        self.weight_init = weight_init
        self.head = I3DHead(in_features=self.num_features, num_classes=num_classes, dropout=head_dropout,
                            init_std=self._head_init_std)
        if weight_init == "swin":
            self.apply(self._init_weights)
            self.head.reset_parameters()  # apply() overwrote the head's own init

    @property
    def _head_init_std(self) -> Optional[float]:
        return 0.01 if self.weight_init == "swin" else None  # "pytorch": nn.Linear's default

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # --- timm interface --------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names of parameters exempt from weight decay besides 1-D ones (the bias tables)."""
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    @torch.jit.ignore
    def semantic_parameter_names(self) -> set[str]:
        """Full names of the parameters new in STViT (STGM, S-only, recovery blocks, global
        centres); empty for plain Swin. They get their own optimizer group and no Swin
        checkpoint holds them."""
        names: set[str] = set()
        for i, layer in enumerate(self.layers):
            prefixes = [f"layers.{i}.{n}" for n in getattr(layer, "semantic_block_names", lambda: [])()]
            names |= {n for n, _ in self.named_parameters()
                      if any(n == p or n.startswith(p + ".") for p in prefixes)}
        return names

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (less memory, ~30% slower)."""
        self.grad_checkpointing = enable
        for m in self.modules():
            if m is not self and hasattr(m, "grad_checkpointing"):
                m.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, head_dropout: Optional[float] = None) -> None:
        """Replace the classifier with a freshly initialised one of ``num_classes`` outputs."""
        dropout = self.head.dropout.p if head_dropout is None else head_dropout
        self.num_classes = num_classes
        device = self.norm.weight.device
        self.head = I3DHead(in_features=self.num_features, num_classes=num_classes, dropout=dropout,
                            init_std=self._head_init_std).to(device)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> normalised last-stage features (B, num_features, T', H', W')."""
        if x.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects a (B, C, T, H, W) video batch, got shape {tuple(x.shape)}")
        x = self.pos_drop(self.patch_embed(x))
        x = x.permute(0, 2, 3, 4, 1)  # (B, D, H, W, C)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return x.permute(0, 4, 1, 2, 3)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, num_features, T', H', W') -> logits (B, num_classes) or pooled features."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))
