"""Token merging (ToMe) inside the Video Swin Transformer: a training-free baseline for STViT-R.

Papers: "Token Merging: Your ViT But Faster", Bolya et al., ICLR 2023 (arXiv 2210.09461), for
bipartite soft matching and proportional attention; "Token Merging for Fast Stable
Diffusion", Bolya & Hoffman, CVPRW 2023 (arXiv 2303.17604), for merging inside the residual
branches only. Written for this package from the papers' descriptions.

Rule for windowed attention. A ToMe Swin block merges tokens inside each (shifted) window,
after the window partition, and only its residual *branches* run on the merged tokens::

    x = x + unmerge(attn(merge(norm1(x))))      matching on the windows of norm1(x)
    x = x + unmerge(mlp(merge(norm2(x))))       matching again, on the windows of norm2(x)

(the MLP branch uses the attention's window partition, so both branches merge within the
same windows). Why: the residual stream keeps the full (B, D, H, W, C) grid, so everything
that depends on token positions works unchanged: the next block's shifted windows, the
relative position bias, the shifted-window mask, the patch merging and stage 4; a merged
token's branch output is copied back to each of its members (``unmerge``), which then differ
again by their residuals. Merging across the whole stage instead (ToMe's ViT recipe) would
leave a set of tokens that no window partition fits. With ``merge_ratio`` 0 (or a window too
small to merge anything) the block runs the Swin code path itself: same weights, same logits.
Each branch matches on its own input because a token-wise MLP is best served by merging
tokens whose MLP inputs are alike; the second matching costs (N/2)^2 C multiply-adds per
window (a quarter of that again for a second round), 4% of the MLP it shrinks for Swin-T's
8 x 7 x 7 windows. Matching uses features (the normalised branch input), not keys as in
ToMe's ViT: keys would need the qkv projection of every token before the merge, a third of
the projection the merge saves.

Matching (:func:`bipartite_soft_matching`): the tokens of a window, in raster order, alternate
into sets A and B (a 3-D checkerboard for odd window sides: every neighbour of an A token is
a B token); each A token finds its most similar B token by cosine similarity; the r A tokens
with the most similar partners merge into them (size-weighted averages). One round merges at
most half a window; larger ``merge_ratio`` values run further rounds on the B tokens (they
alternate into new sets A and B, their features the size-weighted means of their members),
with the r tokens spread over the fewest rounds that can take them in proportion to what each
round can take (:func:`merge_schedule`).

Mask rule: tokens that the shifted-window mask separates never merge, and neither do padding
and image tokens: matching gives such pairs a similarity of -inf, and r is capped so that
every merged A token has an allowed partner (one r for all windows, set by the most
constrained one; at tome_swin3d_tiny's ratio, Swin-T's stage-3 windows are never capped for
16-40 frames and 224-320 crops, while a 2 x 2 x 2 window whose shift leaves one-token regions
merges nothing). A merged token therefore lies inside one mask region, so the averaged mask
is exactly 0 or -100 again, and zero padding never dilutes an image token (padding merged
with padding is lossless: identical tokens).

Attention over merged tokens: a merged token's relative position bias row and column are the
size-weighted averages of its members' (the averaged bias of a pair = the mean bias of all
member pairs; the shifted-window mask is folded in first, as in the Swin block), and
proportional attention adds log(size) of each key token to the logits, so a token of size s
weighs as s copies of itself. All of it is gather/scatter over tensors of every window at once.

FLOPs (fvcore, :mod:`stvit_video.utils.flops`): counted as in the Swin block (the norms on the
full grid, the projections, MLP and attention on the merged tokens) plus the matching's
similarity matmuls; merge/unmerge (scatter/gather), sorting and the bias averaging are memory
moves and additions, uncounted as elsewhere.

Checkpoints: a ToMe model has exactly the parameter names of the Swin of the same size, so a
trained Swin checkpoint loads into it strictly (training-free ToMe).

Use: ``SwinTransformer3D(..., tome=ToMeConfig(merge_ratio=0.56))`` builds a Video Swin whose stage
``ToMeConfig.stage`` is a :class:`ToMeStage3D`; the ``tome_*`` variants of
:mod:`stvit_video.models.registry` fix the ratios that match the STViT-R variants' FLOPs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from stvit_video.models.swin3d import (
    Size3,
    StageSpec,
    SwinStage3D,
    SwinTransformerBlock3D,
    WindowAttention3D,
    cached_tensors,
    effective_window,
    in_windows,
    shifted_window_mask,
)
from stvit_video.utils.errors import InvalidArgument

__all__ = [
    "ToMeConfig",
    "ToMeStage3D",
    "ToMeSwinBlock3D",
    "MergePlan",
    "MergeRound",
    "MergeSchedule",
    "merge_schedule",
    "bipartite_soft_matching",
    "match_tokens",
    "merge_tokens",
    "unmerge_tokens",
    "merge_bias",
    "merged_window_attention",
]


@dataclass(frozen=True)
class ToMeConfig:
    """Which stage merges tokens, and how many; given to
    :class:`~stvit_video.models.swin3d.SwinTransformer3D` as ``tome=``.

    Attributes:
        merge_ratio: fraction of each window's tokens merged away in every branch of every
            block of the stage, in [0, 1): r = floor(merge_ratio * N) for a window of N tokens
            (capped by the mask rule, see the module docstring). 0 = the Swin stage.
        stage: index of the stage whose blocks merge (2 = the third, the blocks STViT-R replaces).
    """

    merge_ratio: float = 0.0
    stage: int = 2

    def __post_init__(self) -> None:
        ratio = self.merge_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
            raise InvalidArgument("ToMeConfig", "merge_ratio", ratio, "must be a number in [0, 1)")
        if not isinstance(self.stage, int) or isinstance(self.stage, bool) or self.stage < 0:
            raise InvalidArgument("ToMeConfig", "stage", self.stage, "must be an integer >= 0")

    def check_fits(self, *, depths: Sequence[int], window_size: Sequence[int]) -> None:
        """Check the stage exists.

        Raises:
            InvalidArgument: naming the field.
        """
        if self.stage >= len(depths):
            raise InvalidArgument("ToMeConfig", "stage", self.stage, f"is not a stage index of depths {tuple(depths)}")

    def build_stage(self, spec: StageSpec, *, feature_side: int) -> "ToMeStage3D":
        """The ToMe stage replacing the Swin stage ``spec`` (``feature_side`` is not needed:
        merging adapts to every window)."""
        return ToMeStage3D(spec, merge_ratio=float(self.merge_ratio))

    def as_dict(self) -> dict:
        """Plain dict of the fields (for checkpoints and logs)."""
        return asdict(self)


# ----------------------------------------------------------------------------------------- #
# Merge schedule: which tokens may merge, and how many per round (static per window geometry)
# ----------------------------------------------------------------------------------------- #
@dataclass(frozen=True)
class MergeRound:
    """One round of bipartite matching.

    Attributes:
        pool_start: the current tokens from this index on are matched (they alternate into A
            and B); the ones before it are kept as they are.
        r: A tokens merged into B tokens in this round.
        allowed: (nW, na, nb) bool, which A/B pairs of each window may merge; None = all.
    """

    pool_start: int
    r: int
    allowed: Optional[torch.Tensor]


@dataclass(frozen=True)
class MergeSchedule:
    """The rounds that merge ``r`` tokens of every window of one geometry."""

    rounds: tuple[MergeRound, ...]

    @property
    def r(self) -> int:
        """Tokens merged away per window in all rounds."""
        return sum(rnd.r for rnd in self.rounds)


def _region_labels(size: Size3, padded: Size3, window: Size3, shift: Size3) -> Optional[list[list[int]]]:
    """Merge region of every token of every window, or None when all tokens share one.

    A region is a sub-window of the shifted-window mask (the same bands as
    :func:`~stvit_video.models.swin3d.shifted_window_mask`: on the rolled, padded map, an
    axis of length P shifted by s > 0 splits into [0, P-w), [P-w, P-s), [P-s, P)), further
    split into padding and image tokens. Plain Python (no tensor data read back), so the
    schedule is traceable.

    Returns:
        nW lists of N = prod(window) labels, windows and tokens in window-partition order.
    """
    if not any(shift) and tuple(size) == tuple(padded):
        return None
    axes = []
    for n, p, w, s in zip(size, padded, window, shift):
        # rolled coordinate c holds the un-rolled coordinate (c + s) % p
        axes.append([(0 if s == 0 or c < p - w else 1 if c < p - s else 2, (c + s) % p >= n) for c in range(p)])
    (Dp, Hp, Wp), (wd, wh, ww) = padded, window
    labels = []
    for i in range(Dp // wd):
        for j in range(Hp // wh):
            for k in range(Wp // ww):
                window_labels = []
                for a in range(i * wd, (i + 1) * wd):
                    for b in range(j * wh, (j + 1) * wh):
                        for c in range(k * ww, (k + 1) * ww):
                            (bd, pd), (bh, ph), (bw, pw) = axes[0][a], axes[1][b], axes[2][c]
                            window_labels.append(((bd * 3 + bh) * 3 + bw) * 2 + int(pd or ph or pw))
                labels.append(window_labels)
    return labels


@cached_tensors
def _merge_schedule_cached(size: Size3, padded: Size3, window: Size3, shift: Size3, r: int,
                           device: torch.device) -> MergeSchedule:
    labels = _region_labels(size, padded, window, shift)
    # what each possible round can merge: A tokens with an allowed B partner in every window
    rounds: list[tuple[int, int, Optional[list[list[int]]], Optional[list[list[int]]]]] = []  # (na, cap, la, lb)
    pool, n = labels, math.prod(window)
    while n >= 2:
        na = (n + 1) // 2
        if pool is None:
            la = lb = None
            cap = na
        else:
            la, lb = [w[0::2] for w in pool], [w[1::2] for w in pool]
            cap = min(sum(label in set(b) for label in a) for a, b in zip(la, lb))
        rounds.append((na, cap, la, lb))
        pool, n = lb, n // 2
    caps = [cap for _, cap, _, _ in rounds]
    r = min(r, sum(caps))
    if r == 0:
        return MergeSchedule(rounds=())
    # the fewest rounds that can merge r, each taking its share of r in proportion to its capacity
    K = next(k for k in range(1, len(caps) + 1) if sum(caps[:k]) >= r)
    total = sum(caps[:K])
    per_round = [r * cap // total for cap in caps[:K]]
    for k in range(K):
        extra = min(r - sum(per_round), caps[k] - per_round[k])
        per_round[k] += extra
    out, pool_start = [], 0
    for (na, _, la, lb), rk in zip(rounds, per_round):
        allowed = None
        if la is not None:
            allowed = (torch.tensor(la, device=device)[:, :, None] == torch.tensor(lb, device=device)[:, None, :])
        out.append(MergeRound(pool_start=pool_start, r=rk, allowed=allowed))
        pool_start += na - rk  # after the round: kept tokens, unmerged A, then B (the next pool)
    return MergeSchedule(rounds=tuple(out))


def merge_schedule(size: Sequence[int], padded: Sequence[int], window: Sequence[int], shift: Sequence[int],
                   r: int, device: torch.device | str = "cpu") -> MergeSchedule:
    """How ``r`` tokens of every window merge, for one feature-map geometry (cached).

    Args:
        size: (D, H, W) feature map before padding.
        padded: (Dp, Hp, Wp) padded map, multiples of ``window``.
        window, shift: the effective window and shift (see
            :func:`~stvit_video.models.swin3d.effective_window`).
        r: tokens to merge away per window; capped so that every merged token has an allowed
            partner in every window (see the module docstring's mask rule).
        device: where the ``allowed`` masks live.

    Returns:
        The :class:`MergeSchedule` (shared: do not modify its tensors); no rounds if nothing merges.
    """
    return _merge_schedule_cached(tuple(size), tuple(padded), tuple(window), tuple(shift), int(r),
                                  torch.device(device))


# ----------------------------------------------------------------------------------------- #
# Matching, merging, unmerging
# ----------------------------------------------------------------------------------------- #
class MergePlan(NamedTuple):
    """Where every token of every window went.

    Attributes:
        slot: (G, N) long, index of each original token's merged token, in [0, M).
        size: (G, M) float, number of original tokens in each merged token.
    """

    slot: torch.Tensor
    size: torch.Tensor


def bipartite_soft_matching(metric: torch.Tensor, r: int, *, pool_start: int = 0,
                            allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One round of ToMe's bipartite soft matching.

    The tokens from ``pool_start`` on alternate into A (even positions of the pool) and B
    (odd); each A token's best B partner is the one of highest cosine similarity; the ``r`` A
    tokens with the most similar best partners merge into them.

    Args:
        metric: (G, M, C) features of the current tokens (G = batch x windows, batch-major).
        r: A tokens to merge; every window must have at least ``r`` A tokens with an allowed partner.
        pool_start: tokens before it are kept and keep their index.
        allowed: (nW, na, nb) bool, which A/B pairs may merge (G a multiple of nW); None = all.

    Returns:
        (G, M) long, the index of every current token after the round, in [0, M - r): kept
        tokens, then the unmerged A tokens, then the B tokens in their order (the merged A
        tokens share their partner's index).
    """
    G, M, _ = metric.shape
    pool = F.normalize(metric[:, pool_start:], dim=-1)
    a, b = pool[:, 0::2], pool[:, 1::2]
    na, nb = a.shape[1], b.shape[1]
    if not 0 <= r <= na:
        raise ValueError(f"bipartite_soft_matching: cannot merge {r} of {na} A tokens")
    scores = a @ b.transpose(1, 2)  # (G, na, nb) cosine similarity
    if allowed is not None:
        nW = allowed.shape[0]
        scores = scores.view(G // nW, nW, na, nb).masked_fill(~allowed, float("-inf")).view(G, na, nb)
    best, partner = scores.max(dim=-1)  # (G, na)
    order = best.argsort(dim=-1, descending=True, stable=True)  # -inf (no allowed partner) last
    merged, kept = order[:, :r], order[:, r:]
    first_b = pool_start + na - r
    positions = torch.arange(max(na, nb), device=metric.device).expand(G, -1)
    a_index = torch.empty_like(partner)
    a_index.scatter_(1, kept, pool_start + positions[:, :na - r])
    a_index.scatter_(1, merged, first_b + partner.gather(1, merged))
    index = torch.empty(G, M, dtype=torch.long, device=metric.device)
    if pool_start:
        index[:, :pool_start] = torch.arange(pool_start, device=metric.device)
    index[:, pool_start::2] = a_index
    index[:, pool_start + 1::2] = first_b + positions[:, :nb]
    return index


def _sum_into(values: torch.Tensor, index: torch.Tensor, slots: int) -> torch.Tensor:
    """Per window, sum (G, N, ...) ``values`` into ``slots`` rows by ``index`` (G, N): (G, slots, ...).

    ``index_add_`` over the flattened (window, slot) rows: the same sums as
    ``scatter_add(1, index.expand(...), values)`` at a quarter of its CPU time, since it adds whole
    rows instead of scattering element by element.
    """
    G, N = index.shape
    rows = (index + torch.arange(G, device=index.device).unsqueeze(1) * slots).reshape(-1)
    flat = values.reshape(G * N, -1)
    out = flat.new_zeros(G * slots, flat.shape[1]).index_add_(0, rows, flat)
    return out.view(G, slots, *values.shape[2:])


def match_tokens(metric: torch.Tensor, schedule: MergeSchedule) -> MergePlan:
    """Run the rounds of ``schedule`` on every window: (G, N, C) features -> :class:`MergePlan`.

    Later rounds match the size-weighted mean features of the merged tokens. No gradient flows
    through the matching (it only picks indices).
    """
    metric = metric.detach()
    G, N, _ = metric.shape
    slot = torch.arange(N, device=metric.device).expand(G, N)
    size = metric.new_ones(G, N)
    for k, rnd in enumerate(schedule.rounds):
        index = bipartite_soft_matching(metric, rnd.r, pool_start=rnd.pool_start, allowed=rnd.allowed)
        M = metric.shape[1] - rnd.r
        slot = index.gather(1, slot)
        new_size = _sum_into(size, index, M)
        if k + 1 < len(schedule.rounds):
            metric = _sum_into(metric * size.unsqueeze(-1), index, M) / new_size.unsqueeze(-1)
        size = new_size
    return MergePlan(slot=slot, size=size)


def merge_tokens(x: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """(G, N, C) tokens -> (G, M, C): each merged token is the mean of its members (all of
    size 1 at a branch input, so this is the size-weighted average)."""
    return _sum_into(x, plan.slot, plan.size.shape[1]) / plan.size.to(x.dtype).unsqueeze(-1)


def unmerge_tokens(y: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """(G, M, C) merged tokens -> (G, N, C): every original token gets its merged token's value."""
    G, N = plan.slot.shape
    return y.gather(1, plan.slot.unsqueeze(-1).expand(G, N, y.shape[-1]))


def merge_bias(bias: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """Average an additive attention bias over merged tokens.

    Args:
        bias: (nWb, h, N, N), the same for every batch element: nWb = 1 (one bias for all
            windows) or nW (per window, e.g. bias + shifted-window mask); G a multiple of nWb.
        plan: the windows' :class:`MergePlan`.

    Returns:
        (G, h, M, M): entry (i, j) = mean of the bias over all member pairs of merged tokens i, j.
    """
    nWb, h, N, _ = bias.shape
    G, M = plan.size.shape
    per_window = bias.unsqueeze(0).expand(G // nWb, nWb, h, N, N).reshape(G, h, N, N)
    # sum the key columns of each merged token, then its query rows: both as row sums
    cols = _sum_into(per_window.permute(0, 3, 1, 2), plan.slot, M)  # (G, M, h, N)
    rows = _sum_into(cols.permute(0, 3, 2, 1), plan.slot, M)  # (G, M, h, M): [query, head, key]
    size = plan.size.to(bias.dtype)
    return rows.permute(0, 2, 1, 3) / (size.view(G, 1, M, 1) * size.view(G, 1, 1, M))


def merged_window_attention(attn: WindowAttention3D, x: torch.Tensor, bias: torch.Tensor,
                            size: torch.Tensor) -> torch.Tensor:
    """``attn``'s window attention over merged tokens, with proportional attention.

    softmax(q k^T * scale + bias + log(size of the key token)) v, then ``attn``'s projection.

    Args:
        attn: the Swin block's attention (its qkv, projection, heads, scale and dropouts).
        x: (G, M, C) merged window tokens.
        bias: (G, h, M, M) merged bias (relative position bias and mask, :func:`merge_bias`).
        size: (G, M) tokens merged into each token.

    Returns:
        (G, M, C).
    """
    G, M, C = x.shape
    h, d = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).view(G, M, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (G, h, M, d)
    bias = (bias + size.to(bias.dtype).log().view(G, 1, 1, M)).to(q.dtype)
    dropout = attn.attn_drop if attn.training else 0.0
    if attn.fused_attn:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=attn.scale)
    else:
        weights = ((q * attn.scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1)
        out = F.dropout(weights, p=dropout, training=attn.training) @ v
    out = out.transpose(1, 2).reshape(G, M, C)
    return attn.proj_drop(attn.proj(out))


# ----------------------------------------------------------------------------------------- #
# Block and stage
# ----------------------------------------------------------------------------------------- #
class ToMeSwinBlock3D(SwinTransformerBlock3D):
    """A Swin block whose attention and MLP branches run on merged window tokens.

    (B, D, H, W, C) -> (B, D, H, W, C); the parameters (and their names) are the Swin
    block's. See the module docstring for the rule; ``merge_ratio`` 0 is the Swin block.
    """

    def __init__(self, *, dim: int, num_heads: int, window_size: Size3 = (8, 7, 7),
                 shift_size: Size3 = (0, 0, 0), mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 merge_ratio: float = 0.0) -> None:
        super().__init__(dim=dim, num_heads=num_heads, window_size=window_size, shift_size=shift_size,
                         mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop,
                         drop_path=drop_path)
        if not 0.0 <= merge_ratio < 1.0:
            raise InvalidArgument("ToMeSwinBlock3D", "merge_ratio", merge_ratio, "must be in [0, 1)")
        self.merge_ratio = merge_ratio

    def _branch(self, y: torch.Tensor, window: Size3, shift: Size3, schedule: MergeSchedule,
                fn: Callable[[torch.Tensor, MergePlan], torch.Tensor]) -> torch.Tensor:
        """``fn`` on the merged tokens of each (shifted) window of ``y``, copied back to the grid.

        y: (B, D, H, W, C) normalised branch input; ``fn``: (G, M, C), plan -> (G, M, C).
        """

        def merged(windows: torch.Tensor, padded: Size3) -> torch.Tensor:  # (B*nW, N, C)
            plan = match_tokens(windows, schedule)
            return unmerge_tokens(fn(merge_tokens(windows, plan), plan), plan)

        return in_windows(y, window, shift, merged)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        B, D, H, W, C = x.shape
        window, shift = effective_window((D, H, W), self.window_size, self.shift_size)
        r = math.floor(self.merge_ratio * math.prod(window))
        padded = tuple(-(-n // w) * w for n, w in zip((D, H, W), window))
        schedule = merge_schedule((D, H, W), padded, window, shift, r, x.device) if r else MergeSchedule(())
        if schedule.r == 0:
            return super()._forward(x)
        bias = self.attn.relative_position_bias(window).unsqueeze(0)  # (1, h, N, N)
        if any(shift):
            bias = bias + shifted_window_mask(padded, window, shift, x.device).unsqueeze(1).to(bias.dtype)

        def attention(t: torch.Tensor, plan: MergePlan) -> torch.Tensor:
            return merged_window_attention(self.attn, t, merge_bias(bias, plan), plan.size)

        x = x + self.drop_path(self._branch(self.norm1(x), window, shift, schedule, attention))
        return x + self.drop_path(self._branch(self.norm2(x), window, shift, schedule, lambda t, _: self.mlp(t)))


class ToMeStage3D(SwinStage3D):
    """A Swin stage of :class:`ToMeSwinBlock3D` (alternating regular and shifted windows),
    then the patch merging; state-dict keys as :class:`~stvit_video.models.swin3d.SwinStage3D`.

    (B, D, H, W, C) -> (B, D, H', W', C').
    """

    def __init__(self, spec: StageSpec, *, merge_ratio: float) -> None:
        super().__init__(spec, blocks=[
            ToMeSwinBlock3D(dim=spec.dim, num_heads=spec.num_heads, window_size=spec.window_size,
                            shift_size=spec.shift_size if j % 2 == 1 else (0, 0, 0), mlp_ratio=spec.mlp_ratio,
                            qkv_bias=spec.qkv_bias, drop=spec.drop, attn_drop=spec.attn_drop,
                            drop_path=spec.drop_path[j], merge_ratio=merge_ratio)
            for j in range(spec.depth)])
        self.merge_ratio = merge_ratio
