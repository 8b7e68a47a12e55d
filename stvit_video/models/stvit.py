"""STViT semantic tokens for the Video Swin Transformer.

Paper: "Making Vision Transformers Efficient from A Token Sparsification View", Chang et al.,
CVPR 2023 (arXiv 2303.08685). The semantic token generation module (STGM) follows the
released STViT-R code block for block (see ``shared/design/stvit-method.md``); the geometry
is derived from the feature size instead of being fixed to a 14 x 14 map.

One *unit* replaces six consecutive Swin blocks of a stage, one for one::

    X (B, D, H, W, C) image tokens
      0  Swin window block on X (no shift)                        X
      1  STGM layer 1: P = max-pool of X per window cell;         S = g1*Attn(P, [P; X_cell]) + MLP
         no residual on the attention branch
      2  STGM layer 2: S (+ global centres G, first unit only)   S   (residual)
         attends [S; X]
      3  S-only block, local: attention inside each cell's s x s tokens
      4  S-only block, global: attention over the group's semantic tokens
      5  recovery: X attends S, residual on X, MLP                X   (STViT-R)
         or, in the last unit of plain STViT, another S-only block and X is dropped:
         the semantic grid becomes the feature map of the rest of the network.

Semantic grid. Along H (and W), a map of size L with window w (clamped to L) has
n = ceil(L / w) windows; each window is max-pooled to s x s tokens (s =
``sample_window_size``), so the grid is n*s wide. Pooling uses adaptive bins over the
whole map, which equals per-window pooling with the released overlapping bins
([0:3], [2:5], [4:7] for w=7, s=3) when L is a multiple of w, and needs neither padding
nor masks when it is not. Layer-1 keys of a cell are its pooled tokens plus the image
tokens of a K = w + w//2 wide window containing the cell's region, placed toward the map
centre and clamped inside the map (for L=14, w=7 that is the released 10 x 10 window at
stride 4).

Modes:
    perframe: the grid has one temporal slice per feature slice (D); STGM layer 2, the
        global S-only block and the recovery attend within each slice (the paper's video
        setting); block 0 is the only temporal mixing in a unit.
    spatiotemporal: cells span ``temporal_pool`` slices (ceil(D / t) grid slices); layer-1
        keys are the image tokens of those slices; layer 2, the global block and the
        recovery attend over the whole clip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from stvit_video.models.swin3d import (
    PatchMerging3D,
    Size3,
    SwinTransformer3D,
    SwinTransformerBlock3D,
    window_partition,
    window_reverse,
)

__all__ = [
    "STViTSwinTransformer3D",
    "STViTStage3D",
    "SemanticBlock",
    "SemanticGeometry",
    "semantic_geometry",
    "UNIT_DEPTH",
    "STVIT_MODES",
]

# Blocks per unit: window block, STGM layer 1, STGM layer 2, local, global, recovery.
UNIT_DEPTH = 6
STVIT_MODES = ("perframe", "spatiotemporal")


# ----------------------------------------------------------------------------------------- #
# Geometry
# ----------------------------------------------------------------------------------------- #
def _axis_key_windows(length: int, cells: int, key_size: int, expand_to_centre: bool) -> torch.Tensor:
    """Index windows of K positions, one per cell along an axis.

    Cell i covers [floor(i L / n), ceil((i+1) L / n)) (the adaptive-pooling region). Its key
    window contains that region, extends toward the axis centre (if ``expand_to_centre``),
    and is clamped to [0, L). K = ``key_size``, raised to the widest region (a non-divisible
    L makes some regions one wider) and capped at L.

    Returns:
        (cells, K) long tensor of positions.
    """
    regions = [((i * length) // cells, -((-(i + 1) * length) // cells)) for i in range(cells)]
    key_size = min(length, max([key_size] + [hi - lo for lo, hi in regions]))
    starts = []
    for lo, hi in regions:
        centre = (lo + hi) / 2
        if not expand_to_centre or 2 * centre < length:
            start = lo
        elif 2 * centre > length:
            start = hi - key_size
        else:  # the middle cell of an odd count: extend both ways
            start = lo - (key_size - (hi - lo)) // 2
        starts.append(min(max(start, 0), length - key_size))
    return torch.tensor(starts).unsqueeze(1) + torch.arange(key_size).unsqueeze(0)


@dataclass(frozen=True)
class SemanticGeometry:
    """Where the semantic tokens of one unit come from, for one feature-map size.

    Attributes:
        cells: (nt, nh, nw) number of window cells along T, H, W.
        cell: (1, s, s) semantic tokens per cell.
        grid: (nt, nh*s, nw*s) semantic token grid.
        key_t, key_h, key_w: (cells_axis, K_axis) positions of the layer-1 key window of
            every cell along each axis.
    """

    cells: Size3
    cell: Size3
    grid: Size3
    key_t: torch.Tensor
    key_h: torch.Tensor
    key_w: torch.Tensor

    @property
    def num_keys(self) -> int:
        """Image tokens in one layer-1 key window."""
        return self.key_t.shape[1] * self.key_h.shape[1] * self.key_w.shape[1]


def semantic_geometry(size: Sequence[int], window: Sequence[int], sample_window_size: int,
                      temporal_pool: int) -> SemanticGeometry:
    """Semantic grid and layer-1 key windows for a feature map.

    Args:
        size: (D, H, W) image-token map.
        window: (wd, wh, ww) Swin window; only wh, ww are used (clamped to H, W).
        sample_window_size: s, semantic tokens per window side.
        temporal_pool: slices pooled into one grid slice (1 = per-frame).

    Returns:
        The :class:`SemanticGeometry`.
    """
    D, H, W = size
    s = sample_window_size
    wt, wh, ww = min(temporal_pool, D), min(window[1], H), min(window[2], W)
    nt, nh, nw = math.ceil(D / wt), math.ceil(H / wh), math.ceil(W / ww)
    kh, kw = min(H, wh + wh // 2), min(W, ww + ww // 2)
    return SemanticGeometry(
        cells=(nt, nh, nw), cell=(1, s, s), grid=(nt, nh * s, nw * s),
        key_t=_axis_key_windows(D, nt, wt, expand_to_centre=False),
        key_h=_axis_key_windows(H, nh, kh, expand_to_centre=True),
        key_w=_axis_key_windows(W, nw, kw, expand_to_centre=True),
    )


def gather_key_windows(x: torch.Tensor, geo: SemanticGeometry) -> torch.Tensor:
    """Image tokens of every cell's layer-1 key window.

    Args:
        x: (B, D, H, W, C') tokens (already projected to keys/values).

    Returns:
        (B * nt * nh * nw, Kt * Kh * Kw, C'), cells in raster order.
    """
    B, C = x.shape[0], x.shape[-1]
    t = geo.key_t.to(x.device)[:, None, None, :, None, None]
    h = geo.key_h.to(x.device)[None, :, None, None, :, None]
    w = geo.key_w.to(x.device)[None, None, :, None, None, :]
    windows = x[:, t, h, w]  # (B, nt, nh, nw, Kt, Kh, Kw, C')
    return windows.reshape(B * math.prod(geo.cells), geo.num_keys, C)


def to_groups(x: torch.Tensor, per_slice: bool) -> torch.Tensor:
    """(B, T, H, W, C) -> attention groups: (B*T, H*W, C) per slice or (B, T*H*W, C) per clip."""
    B, T, H, W, C = x.shape
    return x.reshape(B * T, H * W, C) if per_slice else x.reshape(B, T * H * W, C)


# ----------------------------------------------------------------------------------------- #
# Blocks
# ----------------------------------------------------------------------------------------- #
class SemanticAttention(nn.Module):
    """Multi-head attention with separate q and kv projections (queries may differ from keys).

    No masks, no position bias: q (B, Nq, C) attends kv (B, Nk, 2C).
    """

    def __init__(self, *, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"SemanticAttention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, Nq, C) normalised queries.
            kv: (B, Nk, 2C) projected keys and values (see :meth:`SemanticBlock.project_kv`).

        Returns:
            (B, Nq, C).
        """
        B, Nq, C = x.shape
        h, d = self.num_heads, self.head_dim
        q = self.q(x).view(B, Nq, h, d).transpose(1, 2)  # (B, h, Nq, d)
        k, v = kv.view(B, -1, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, Nk, d)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0,
                                             scale=self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, Nq, C)))


class SemanticBlock(nn.Module):
    """Pre-norm transformer block with layer scale whose keys may come from other tokens.

    One LayerNorm normalises both queries and keys/values. With ``residual=False`` (STGM
    layer 1) the attention branch replaces its input: out = g1 * Attn(...); the MLP branch
    always has a residual.
    """

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init: float = 1e-5, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SemanticAttention(dim=dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                      proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def project_kv(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., C) un-normalised tokens -> (..., 2C) keys and values of this block."""
        return self.attn.kv(self.norm1(tokens))

    def forward(self, x: torch.Tensor, kv: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: (B, Nq, C) query tokens (the residual stream).
            kv: (B, Nk, 2C) projected keys/values; None = self-attention over ``x``.

        Returns:
            (B, Nq, C).
        """
        normed = self.norm1(x)
        if kv is None:
            kv = self.attn.kv(normed)
        attn = self.layer_scale_1 * self.attn(normed, kv)
        x = x + self.drop_path(attn) if self.residual else attn
        return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))


# ----------------------------------------------------------------------------------------- #
# Stage
# ----------------------------------------------------------------------------------------- #
class STViTStage3D(nn.Module):
    """A Swin stage whose last ``num_units`` x 6 blocks are STViT units.

    ``blocks[j]`` replaces block j of the Swin stage it is built from, so checkpoint keys
    keep their block index. In a unit starting at block j0:
    j0 Swin window block, j0+1 STGM layer 1, j0+2 STGM layer 2, j0+3 local S-only,
    j0+4 global S-only, j0+5 recovery (or, in plain STViT's last unit, a local S-only block).

    (B, D, H, W, C) -> (B, D, H', W', C') for STViT-R; plain STViT returns the merged semantic
    grid (B, Tg, Hg', Wg', C') instead.
    """

    def __init__(self, *, dim: int, depth: int, num_heads: int, window_size: Size3, mlp_ratio: float,
                 qkv_bias: bool, drop: float, attn_drop: float, drop_path: Sequence[float],
                 downsample: bool, num_units: int, mode: str, recovery: bool, sample_window_size: int,
                 temporal_pool: int, use_global: bool, global_grid: tuple[int, int],
                 layer_scale_init: float) -> None:
        super().__init__()
        if mode not in STVIT_MODES:
            raise ValueError(f"STViTStage3D: mode {mode!r} must be one of {STVIT_MODES}")
        if not 1 <= num_units <= depth // UNIT_DEPTH:
            raise ValueError(f"STViTStage3D: {num_units} units of {UNIT_DEPTH} blocks do not fit a stage of "
                             f"depth {depth} (at most {depth // UNIT_DEPTH})")
        if sample_window_size < 1 or temporal_pool < 1:
            raise ValueError(f"STViTStage3D: sample_window_size ({sample_window_size}) and temporal_pool "
                             f"({temporal_pool}) must be >= 1")
        if mode == "perframe" and temporal_pool != 1:
            raise ValueError(f"STViTStage3D: temporal_pool={temporal_pool} needs mode='spatiotemporal'")
        self.mode = mode
        self.recovery = recovery
        self.window_size = tuple(window_size)
        self.sample_window_size = sample_window_size
        self.temporal_pool = temporal_pool
        self.grad_checkpointing = False
        self.first_unit = depth - num_units * UNIT_DEPTH
        # Swin blocks before the units keep their regular/shifted alternation.
        shift = tuple(w // 2 for w in window_size)
        self.roles: list[str] = []
        self.blocks = nn.ModuleList()
        for j in range(depth):
            role = self._role(j, depth)
            self.roles.append(role)
            if role in ("swin", "unit_swin"):
                block: nn.Module = SwinTransformerBlock3D(
                    dim=dim, num_heads=num_heads, window_size=window_size,
                    shift_size=shift if role == "swin" and j % 2 else (0, 0, 0), mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                    drop=drop, attn_drop=attn_drop, drop_path=drop_path[j])
            else:
                block = SemanticBlock(dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                                      drop=drop, attn_drop=attn_drop, drop_path=drop_path[j],
                                      layer_scale_init=layer_scale_init, residual=role != "stgm1")
            self.blocks.append(block)
        self.global_grid = tuple(global_grid)
        if use_global:
            self.global_centres = nn.Parameter(torch.zeros(1, global_grid[0] * global_grid[1], dim))
            trunc_normal_(self.global_centres, std=0.02)
        else:
            self.global_centres = None
        self.downsample = PatchMerging3D(dim=dim) if downsample else None

    def _role(self, j: int, depth: int) -> str:
        if j < self.first_unit:
            return "swin"
        k = (j - self.first_unit) % UNIT_DEPTH
        last_unit = j >= depth - UNIT_DEPTH
        if k == 5 and last_unit and not self.recovery:
            return "local"
        return ("unit_swin", "stgm1", "stgm2", "local", "global", "recovery")[k]

    @property
    def per_slice(self) -> bool:
        return self.mode == "perframe"

    def semantic_block_names(self) -> list[str]:
        """Names (relative to the stage) of the modules and parameters new in STViT."""
        names = [f"blocks.{j}" for j, r in enumerate(self.roles) if r not in ("swin", "unit_swin")]
        return names + (["global_centres"] if self.global_centres is not None else [])

    def _global_centres(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        """G resized to the current grid: (1, Hg*Wg, C); bilinear when the grid differs."""
        G = self.global_centres
        if tuple(grid_hw) == self.global_grid:
            return G
        gh, gw = self.global_grid
        G = G.transpose(1, 2).reshape(1, -1, gh, gw)
        G = F.interpolate(G, size=grid_hw, mode="bilinear", align_corners=False)
        return G.flatten(2).transpose(1, 2)

    def _call(self, fn, *args: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and any(a.requires_grad for a in args):
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    # --- unit steps: X (B, D, H, W, C), S grid (B, Tg, Hg, Wg, C) --------------------------------
    def _stgm1(self, blk: SemanticBlock, x: torch.Tensor) -> torch.Tensor:
        B, D, H, W, C = x.shape
        geo = semantic_geometry((D, H, W), self.window_size, self.sample_window_size, self.temporal_pool)
        pooled = F.adaptive_max_pool3d(x.permute(0, 4, 1, 2, 3), geo.grid)  # (B, C, Tg, Hg, Wg)
        pooled = pooled.permute(0, 2, 3, 4, 1)
        cells_p = window_partition(pooled, geo.cell)  # (B*cells, s*s, C)
        kv = torch.cat([blk.project_kv(cells_p), gather_key_windows(blk.project_kv(x), geo)], dim=1)
        s = blk(cells_p, kv)  # (B*cells, s*s, C)
        return window_reverse(s, geo.cell, B, *geo.grid)

    def _stgm2(self, blk: SemanticBlock, s: torch.Tensor, x: torch.Tensor, add_global: bool) -> torch.Tensor:
        B, Tg, Hg, Wg, C = s.shape
        q = s
        if add_global:  # G enters the residual stream; the keys use S without G
            q = s + self._global_centres((Hg, Wg)).view(1, 1, Hg, Wg, C)
        kv = torch.cat([to_groups(blk.project_kv(s), self.per_slice),
                        to_groups(blk.project_kv(x), self.per_slice)], dim=1)
        return blk(to_groups(q, self.per_slice), kv).view(B, Tg, Hg, Wg, C)

    def _local(self, blk: SemanticBlock, s: torch.Tensor) -> torch.Tensor:
        B, Tg, Hg, Wg, C = s.shape
        cell = (1, self.sample_window_size, self.sample_window_size)
        return window_reverse(blk(window_partition(s, cell)), cell, B, Tg, Hg, Wg)

    def _global(self, blk: SemanticBlock, s: torch.Tensor) -> torch.Tensor:
        return blk(to_groups(s, self.per_slice)).view(s.shape)

    def _recover(self, blk: SemanticBlock, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        kv = to_groups(blk.project_kv(s), self.per_slice)
        return blk(to_groups(x, self.per_slice), kv).view(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> next stage's input (see class docstring)."""
        s: Optional[torch.Tensor] = None
        for j, (blk, role) in enumerate(zip(self.blocks, self.roles)):
            if role in ("swin", "unit_swin"):
                x = blk(x)  # Swin blocks checkpoint themselves
            elif role == "stgm1":
                s = self._call(lambda a, b=blk: self._stgm1(b, a), x)
            elif role == "stgm2":
                add_global = self.global_centres is not None and j == self.roles.index("stgm2")  # first unit only
                s = self._call(lambda a, c, b=blk, g=add_global: self._stgm2(b, a, c, g), s, x)
            elif role == "local":
                s = self._call(lambda a, b=blk: self._local(b, a), s)
            elif role == "global":
                s = self._call(lambda a, b=blk: self._global(b, a), s)
            else:  # recovery
                x = self._call(lambda a, c, b=blk: self._recover(b, a, c), x, s)
        if not self.recovery:
            x = s  # plain STViT: the semantic grid is the feature map from here on
        if self.downsample is not None:
            x = self.downsample(x)
        return x


# ----------------------------------------------------------------------------------------- #
# Model
# ----------------------------------------------------------------------------------------- #
class STViTSwinTransformer3D(SwinTransformer3D):
    """Video Swin with STViT units in one stage; all other stages are plain Swin.

    Args (besides those of :class:`SwinTransformer3D`):
        stvit_stage: index of the stage holding the units (2 = the third, as in the paper).
        num_units: units in that stage, each replacing its last 6 x num_units blocks.
        mode: "perframe" or "spatiotemporal".
        recovery: STViT-R (image tokens restored after every unit); False = plain STViT,
            whose later stages run on the semantic grid.
        sample_window_size: s, semantic tokens per window side (s x s per window).
        temporal_pool: slices pooled into one grid slice (spatiotemporal mode only).
        use_global: add learnable global centres G to the queries of STGM layer 2.
        layer_scale_init: initial value of the layer scales of the new blocks.
        img_size: training crop; sets the grid of G (other crops interpolate G).
    """

    def __init__(self, *, num_classes: int = 400, in_chans: int = 3, patch_size: Size3 = (2, 4, 4),
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: Size3 = (8, 7, 7),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, patch_norm: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 head_dropout: float = 0.5, stvit_stage: int = 2, num_units: int = 1,
                 mode: str = "perframe", recovery: bool = True, sample_window_size: int = 3,
                 temporal_pool: int = 1, use_global: bool = False, layer_scale_init: float = 1e-5,
                 img_size: int = 224) -> None:
        if not 0 <= stvit_stage < len(depths):
            raise ValueError(f"STViTSwinTransformer3D: stvit_stage {stvit_stage} is not a stage index "
                             f"of depths {tuple(depths)}")
        self.stvit_stage = stvit_stage
        self.stvit_args = dict(num_units=num_units, mode=mode, recovery=recovery,
                               sample_window_size=sample_window_size, temporal_pool=temporal_pool,
                               use_global=use_global, layer_scale_init=layer_scale_init)
        self.img_size = img_size
        super().__init__(num_classes=num_classes, in_chans=in_chans, patch_size=patch_size,
                         embed_dim=embed_dim, depths=depths, num_heads=num_heads, window_size=window_size,
                         mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, patch_norm=patch_norm, drop_rate=drop_rate,
                         attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                         head_dropout=head_dropout)
        # new blocks keep layer scales at layer_scale_init (apply() only touched Linear/LayerNorm)

    def _global_grid(self) -> tuple[int, int]:
        """Semantic grid (Hg, Wg) of one slice for an ``img_size`` crop."""
        side = self.img_size
        side = math.ceil(side / self.patch_embed.patch_size[1])
        for _ in range(self.stvit_stage):
            side = math.ceil(side / 2)
        geo = semantic_geometry((1, side, side), self.window_size, self.stvit_args["sample_window_size"], 1)
        return geo.grid[1], geo.grid[2]

    def _make_stage(self, i: int, drop_path: Sequence[float]) -> nn.Module:
        if i != self.stvit_stage:
            return super()._make_stage(i, drop_path)
        return STViTStage3D(
            dim=self.stage_dim(i), depth=self.depths[i], num_heads=self.num_heads[i],
            window_size=self.window_size, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
            drop=self.drop_rate, attn_drop=self.attn_drop_rate, drop_path=drop_path,
            downsample=i < self.num_layers - 1, global_grid=self._global_grid(), **self.stvit_args)

    def semantic_parameter_names(self) -> set[str]:
        """Full names of the parameters new in STViT (STGM, S-only, recovery blocks and G).

        These get their own optimizer group, so a backbone LR multiplier does not slow them.
        """
        prefixes = [f"layers.{self.stvit_stage}.{n}" for n in self.layers[self.stvit_stage].semantic_block_names()]
        return {n for n, _ in self.named_parameters() if any(n == p or n.startswith(p + ".") for p in prefixes)}
