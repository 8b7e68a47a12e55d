"""STViT semantic tokens for the Video Swin Transformer.

Paper: "Making Vision Transformers Efficient from A Token Sparsification View", Chang et al.,
CVPR 2023 (arXiv 2303.08685). The semantic token generation module (STGM) follows the
released STViT-R code block for block; the geometry is derived from the feature size instead
of being fixed to a 14 x 14 map. What the code relies on from the release: every new block is
pre-norm, with one LayerNorm (eps 1e-5) shared by a cross-attention's queries and keys,
separate q and kv projections with bias, layer scales (init 1e-5) on both branches, heads =
the stage's, no masks and no dropout in the attention; the global centres G are one
(1, grid, C) tensor for the stage, truncated-normal (std 0.02), added to the layer-2 queries of
the first unit only (they enter the residual stream; the keys use S without G); the STGM never
updates X; a Swin checkpoint initialises the new blocks by splitting its qkv (q = the first C
rows, kv = the rest).

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

Use: ``SwinTransformer3D(..., stvit=STViTConfig(mode="perframe", num_units=1))`` builds a Video
Swin whose stage ``STViTConfig.stage`` is an :class:`STViTStage3D`; the named variants of
:mod:`stvit_video.models.registry` do that for the shipped settings.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from stvit_video.models.swin3d import Size3, StageSpec, cached_tensors, window_partition, window_reverse
from stvit_video.utils.errors import InvalidArgument

__all__ = [
    "STViTConfig",
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


@dataclass(frozen=True)
class STViTConfig:
    """Where and how semantic tokens replace Swin blocks; given to
    :class:`~stvit_video.models.swin3d.SwinTransformer3D` as ``stvit=``.

    Attributes:
        mode: "perframe" (tokens per temporal slice, the paper's video setting) or
            "spatiotemporal" (cells span ``temporal_pool`` slices; clip-wide attention).
        recovery: STViT-R (image tokens restored after every unit); False = plain STViT,
            whose later stages run on the semantic grid.
        stage: index of the stage holding the units (2 = the third, as in the paper).
        num_units: units in that stage, each replacing 6 of its last blocks.
        sample_window_size: s, semantic tokens per window side (s x s per window).
        temporal_pool: slices pooled into one grid slice (spatiotemporal mode only).
        use_global: learnable global centres G added to the STGM layer-2 queries (first unit).
        layer_scale_init: initial value of the layer scales of the new blocks.
    """

    mode: str = "perframe"
    recovery: bool = True
    stage: int = 2
    num_units: int = 1
    sample_window_size: int = 3
    temporal_pool: int = 1
    use_global: bool = False
    layer_scale_init: float = 1e-5

    def __post_init__(self) -> None:
        def bad(arg: str, why: str) -> InvalidArgument:
            return InvalidArgument("STViTConfig", arg, getattr(self, arg), why)

        if self.mode not in STVIT_MODES:
            raise bad("mode", f"must be one of {', '.join(STVIT_MODES)}")
        for arg in ("stage", "num_units", "sample_window_size", "temporal_pool"):
            value = getattr(self, arg)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if arg == "stage" else 1):
                raise bad(arg, f"must be an integer >= {0 if arg == 'stage' else 1}")
        if self.mode == "perframe" and self.temporal_pool != 1:
            raise bad("temporal_pool", "must be 1 in mode 'perframe' (use mode 'spatiotemporal' to pool slices)")
        if not isinstance(self.recovery, bool) or not isinstance(self.use_global, bool):
            raise bad("recovery" if not isinstance(self.recovery, bool) else "use_global", "must be True or False")
        if not self.layer_scale_init >= 0:
            raise bad("layer_scale_init", "must be >= 0")

    def check_fits(self, *, depths: Sequence[int], window_size: Sequence[int]) -> None:
        """Check the units fit the backbone: the stage exists, has 6 x ``num_units`` blocks,
        and s tokens fit a window side.

        Raises:
            InvalidArgument: naming the field.
        """
        if self.stage >= len(depths):
            raise InvalidArgument("STViTConfig", "stage", self.stage,
                                  f"is not a stage index of depths {tuple(depths)}")
        most = depths[self.stage] // UNIT_DEPTH
        if self.num_units > most:
            raise InvalidArgument("STViTConfig", "num_units", self.num_units,
                                  f"{self.num_units} units of {UNIT_DEPTH} blocks do not fit a stage of depth "
                                  f"{depths[self.stage]} (at most {most})")
        side = min(window_size[1], window_size[2])
        if self.sample_window_size > side:
            raise InvalidArgument("STViTConfig", "sample_window_size", self.sample_window_size,
                                  f"more tokens per side than the window has ({side})")

    def global_grid(self, feature_side: int, window_size: Sequence[int]) -> tuple[int, int]:
        """Semantic grid (Hg, Wg) of one slice of a ``feature_side`` square map: the shape of G."""
        geo = semantic_geometry((1, feature_side, feature_side), tuple(window_size), self.sample_window_size, 1)
        return geo.grid[1], geo.grid[2]

    def build_stage(self, spec: StageSpec, *, feature_side: int) -> "STViTStage3D":
        """The STViT stage replacing the Swin stage ``spec`` (``feature_side``: its map side at
        the training crop, which sizes G)."""
        return STViTStage3D(spec, self, global_grid=self.global_grid(feature_side, spec.window_size))

    def as_dict(self) -> dict:
        """Plain dict of the fields (for checkpoints and logs)."""
        return asdict(self)


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

    Built once per (map size, window, s, temporal pool, device) and cached, so no index is
    rebuilt or copied to the device in a forward pass.

    Attributes:
        size: (D, H, W) image-token map.
        cells: (nt, nh, nw) number of window cells along T, H, W.
        cell: (1, s, s) semantic tokens per cell.
        grid: (nt, nh*s, nw*s) semantic token grid.
        key_t, key_h, key_w: (cells_axis, K_axis) positions of the layer-1 key window of
            every cell along each axis.
        key_index: (nt*nh*nw, Kt*Kh*Kw) positions of every cell's key window in the
            flattened (D*H*W) map; cells and keys in raster order.
    """

    size: Size3
    cells: Size3
    cell: Size3
    grid: Size3
    key_t: torch.Tensor
    key_h: torch.Tensor
    key_w: torch.Tensor
    key_index: torch.Tensor

    @property
    def num_keys(self) -> int:
        """Image tokens in one layer-1 key window."""
        return self.key_index.shape[1]


@cached_tensors
def _semantic_geometry_cached(size: Size3, window: tuple[int, int], s: int, temporal_pool: int,
                              device: torch.device) -> SemanticGeometry:
    D, H, W = size
    wt, wh, ww = min(temporal_pool, D), min(window[0], H), min(window[1], W)
    nt, nh, nw = math.ceil(D / wt), math.ceil(H / wh), math.ceil(W / ww)
    kh, kw = min(H, wh + wh // 2), min(W, ww + ww // 2)
    key_t = _axis_key_windows(D, nt, wt, expand_to_centre=False)
    key_h = _axis_key_windows(H, nh, kh, expand_to_centre=True)
    key_w = _axis_key_windows(W, nw, kw, expand_to_centre=True)
    flat = ((key_t[:, None, None, :, None, None] * H + key_h[None, :, None, None, :, None]) * W
            + key_w[None, None, :, None, None, :])  # (nt, nh, nw, Kt, Kh, Kw)
    return SemanticGeometry(
        size=size, cells=(nt, nh, nw), cell=(1, s, s), grid=(nt, nh * s, nw * s),
        key_t=key_t.to(device), key_h=key_h.to(device), key_w=key_w.to(device),
        key_index=flat.reshape(nt * nh * nw, -1).to(device))


def semantic_geometry(size: Sequence[int], window: Sequence[int], sample_window_size: int,
                      temporal_pool: int, device: torch.device | str = "cpu") -> SemanticGeometry:
    """Semantic grid and layer-1 key windows for a feature map (cached per arguments).

    Args:
        size: (D, H, W) image-token map.
        window: (wd, wh, ww) Swin window; only wh, ww are used (clamped to H, W).
        sample_window_size: s, semantic tokens per window side.
        temporal_pool: slices pooled into one grid slice (1 = per-frame).
        device: where the index tensors live.

    Returns:
        The :class:`SemanticGeometry` (shared: do not modify its tensors).
    """
    return _semantic_geometry_cached(tuple(size), (window[1], window[2]), sample_window_size, temporal_pool,
                                     torch.device(device))


def gather_key_windows(x: torch.Tensor, geo: SemanticGeometry) -> torch.Tensor:
    """Image tokens of every cell's layer-1 key window.

    Args:
        x: (B, D, H, W, C') tokens (already projected to keys/values), on ``geo``'s device.

    Returns:
        (B * nt * nh * nw, Kt * Kh * Kw, C'), cells in raster order.
    """
    B, C = x.shape[0], x.shape[-1]
    windows = x.reshape(B, -1, C)[:, geo.key_index]  # (B, cells, K, C')
    return windows.reshape(B * geo.key_index.shape[0], geo.num_keys, C)


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

    For pictures only (:mod:`stvit_video.engine.visualize`): with ``store_attention`` set,
    ``forward`` also keeps the attention weights of its q and k, softmax(q k^T * scale) averaged
    over the heads, as ``attention`` (B, Nq, Nk), detached; the output still comes from the one
    fused call, so it is the same with or without the flag. Off by default (no extra work).
    """

    store_attention: bool = False
    attention: Optional[torch.Tensor] = None

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
        if self.store_attention:  # visualisation: the weights the call above used, mean over heads
            self.attention = (q @ k.transpose(-2, -1) * self.scale).softmax(-1).mean(1).detach()  # (B, Nq, Nk)
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
    """A Swin stage whose last ``config.num_units`` x 6 blocks are STViT units.

    ``blocks[j]`` replaces block j of the Swin stage it is built from, so checkpoint keys
    keep their block index. In a unit starting at block j0:
    j0 Swin window block, j0+1 STGM layer 1, j0+2 STGM layer 2, j0+3 local S-only,
    j0+4 global S-only, j0+5 recovery (or, in plain STViT's last unit, a local S-only block).

    (B, D, H, W, C) -> (B, D, H', W', C') for STViT-R; plain STViT returns the merged semantic
    grid (B, Tg, Hg', Wg', C') instead.

    Args:
        spec: the Swin stage this one replaces (widths, depth, window, drop-path rates).
        config: the semantic-token settings.
        global_grid: (Hg, Wg) grid of the global centres G (the grid at the training crop).
    """

    def __init__(self, spec: StageSpec, config: STViTConfig, *, global_grid: tuple[int, int]) -> None:
        super().__init__()
        most = spec.depth // UNIT_DEPTH
        if config.num_units > most:
            raise InvalidArgument("STViTStage3D", "num_units", config.num_units,
                                  f"{config.num_units} units of {UNIT_DEPTH} blocks do not fit a stage of depth "
                                  f"{spec.depth} (at most {most})")
        self.config = config
        self.mode = config.mode
        self.recovery = config.recovery
        self.window_size = spec.window_size
        self.sample_window_size = config.sample_window_size
        self.temporal_pool = config.temporal_pool
        self.grad_checkpointing = False
        self.first_unit = spec.depth - config.num_units * UNIT_DEPTH
        self.roles = [self._role(j, spec.depth) for j in range(spec.depth)]
        self.blocks = nn.ModuleList([
            # Swin blocks before the units keep their regular/shifted alternation; a unit's is unshifted
            spec.swin_block(j, shifted=role == "swin" and j % 2 == 1) if role in ("swin", "unit_swin")
            else SemanticBlock(dim=spec.dim, num_heads=spec.num_heads, mlp_ratio=spec.mlp_ratio,
                               qkv_bias=spec.qkv_bias, drop=spec.drop, attn_drop=spec.attn_drop,
                               drop_path=spec.drop_path[j], layer_scale_init=config.layer_scale_init,
                               residual=role != "stgm1")
            for j, role in enumerate(self.roles)
        ])
        self.global_grid = tuple(global_grid)
        if config.use_global:
            self.global_centres = nn.Parameter(torch.zeros(1, global_grid[0] * global_grid[1], spec.dim))
            trunc_normal_(self.global_centres, std=0.02)
        else:
            self.global_centres = None
        self.downsample = spec.merging()

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
        geo = semantic_geometry((D, H, W), self.window_size, self.sample_window_size, self.temporal_pool,
                                x.device)
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
