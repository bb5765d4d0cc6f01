"""A fast wav2vec 2.0 pre-training step on the parameters of :class:`Wav2Vec2`.

:meth:`Wav2Vec2.pretrain_loss` runs ``transformers``' Wav2Vec2ForPreTraining with masks and
distractors drawn on the host. This module computes the same loss from the same parameters
(nothing is copied: it reads the ``transformers`` modules' weights), written for a GPU:

- mask spans and distractors are drawn on the device, with static shapes and no host sync, so
  the whole step can be queued ahead of the GPU and compiled;
- the quantiser picks codevectors with a matrix product of the one-hot choices, instead of
  broadcasting every frame against every codevector (a (frames, G*V, D/G) tensor);
- the contrastive logits come from one (T x T) similarity matrix per utterance between context
  and quantised targets, gathered at the distractor indices, instead of gathering
  (K+1, B, T, D) target vectors and comparing them one by one; "distractor equals the
  positive" is decided on the codevector indices;
- the Transformer uses fused QKV projections and ``scaled_dot_product_attention`` (flash
  attention when the batch has no padding), in whatever autocast the caller sets;
- each region (feature encoder, Transformer input, one Transformer layer, loss) can be compiled
  with ``torch.compile``; one compiled layer serves every layer, since weights are inputs. Layer
  drop stays a host-side draw per layer, as in ``transformers``.

The loss definition is ``transformers``': contrastive cross-entropy over the positive and
``num_negatives`` distractors (cosine similarity / temperature, distractors identical to the
positive excluded), plus ``diversity_loss_weight`` times the codebook-diversity term, summed
over masked frames and divided by their number (as :meth:`Wav2Vec2.pretrain_loss`). Mask spans
follow the same rules (per-utterance rounding of the span count, at least ``min_masks`` spans,
spans only where they fit, utterances with fewer than two masked frames left unmasked), and
distractors are uniform over the other masked frames of the same utterance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from sslgrid.models.upstream import conv_output_lengths, padding_mask
from sslgrid.models.wav2vec2 import masked_group_norm

log = logging.getLogger(__name__)


def span_mask(
    frame_lengths: torch.Tensor,
    num_frames: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int,
) -> torch.Tensor:
    """(B, T) boolean mask of time spans over the valid frames, drawn on ``frame_lengths``' device.

    Each utterance of ``L`` valid frames gets ``floor(mask_prob * L / mask_length + u)`` spans
    (``u`` uniform per utterance), at least ``min_masks``, at most what fits, with distinct
    starts drawn uniformly from the positions where a whole span fits; spans may overlap.
    Utterances left with fewer than two masked frames get none (a masked frame needs another
    one as a distractor).
    """
    device = frame_lengths.device
    batch = frame_lengths.shape[0]
    length = frame_lengths.to(torch.float32)
    spans = torch.floor(mask_prob * length / mask_length + torch.rand(batch, device=device))
    spans = spans.clamp_min(float(min_masks))
    spans = spans.clamp_max(float(num_frames // mask_length))
    room = (length - (mask_length - 1)).clamp_min(0.0)
    spans = torch.minimum(spans, room)
    positions = torch.arange(num_frames, device=device)
    keys = torch.rand(batch, num_frames, device=device)
    keys = torch.where(positions[None, :] < room[:, None], keys, 2.0)
    # The rank of each position's key: the ``spans`` smallest keys are distinct uniform starts.
    rank = keys.argsort(dim=1).argsort(dim=1)
    starts = (rank < spans[:, None]).to(torch.int32)
    covered = starts.cumsum(1)
    before = F.pad(covered, (mask_length, 0))[:, :num_frames]
    mask = (covered - before) > 0
    mask = mask & (positions[None, :] < frame_lengths[:, None])
    return mask & (mask.sum(1, keepdim=True) >= 2)


def sample_distractors(mask: torch.Tensor, num_negatives: int) -> torch.Tensor:
    """(B, T, K) frame indices: for each masked frame, K other masked frames of its utterance.

    Uniform with replacement over the utterance's other masked frames. Entries of unmasked
    frames (and of utterances without masked frames) are valid indices that the loss ignores.
    """
    batch, num_frames = mask.shape
    masked = mask.sum(1)
    rank = mask.long().cumsum(1) - 1
    # Positions of the masked frames, in order, at the front of each row.
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    choices = (masked - 1).clamp_min(1).to(torch.float32)
    draw = torch.rand(batch, num_frames, num_negatives, device=mask.device)
    pick = torch.floor(draw * choices[:, None, None]).long()
    pick = pick + (pick >= rank[..., None]).long()
    pick = pick.clamp_max(num_frames - 1)
    return order.gather(1, pick.view(batch, -1)).view(batch, num_frames, num_negatives)


def _scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass, ``scale`` times its gradient in the backward pass."""
    if scale == 1.0:
        return x
    detached = x.detach()
    return detached + scale * (x - detached)


@dataclass(frozen=True)
class _Static:
    """Settings the compiled regions specialise on (Python values, not tensors)."""

    conv_gemm: bool
    pos_conv: str
    group_norm: bool
    norm_groups: int
    pre_ln: bool
    conv_strides: tuple[int, ...]
    pos_groups: int
    num_heads: int
    num_groups: int
    num_vars: int
    num_negatives: int
    temperature: float
    diversity_weight: float
    feature_grad_mult: float
    layer_norm_eps: float
    feat_proj_dropout: float
    quantizer_dropout: float
    hidden_dropout: float
    attention_dropout: float
    activation_dropout: float


def _conv_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int):
    """1-D convolution of channels-last ``x`` (B, L, C_in) as one matrix product.

    The windows are gathered (``unfold``: (B, L_out, C_in, K)) and multiplied by the weight
    laid out as (C_in * K, C_out), which runs on the tensor cores whatever the kernel size and
    stride; cuDNN's heuristics pick slow non-tensor-core kernels for some of these shapes.
    """
    c_out, c_in, kernel = weight.shape
    windows = x.unfold(1, kernel, stride)
    out = torch.matmul(
        windows.reshape(*windows.shape[:2], c_in * kernel), weight.reshape(c_out, -1).t()
    )
    return out if bias is None else out + bias


def _grouped_conv_gemm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int
) -> torch.Tensor:
    """The "same"-padded grouped convolution of the position embedding as batched products.

    ``x`` is channels-last (B, T, D), ``weight`` (D, D / groups, K); the output keeps the first
    T frames (an even kernel gives T + 1). The windows of every group are gathered
    ((B * T, groups, D / groups * K), K times the input) and multiplied by each group's weight
    in one batched product.
    """
    batch, frames, dim = x.shape
    out_dim, per_group, kernel = weight.shape
    padded = F.pad(x, (0, 0, kernel // 2, kernel // 2))
    windows = padded.unfold(1, kernel, 1)[:, :frames]  # (B, T, D, K)
    windows = windows.reshape(batch * frames, groups, per_group * kernel)
    grouped = weight.reshape(groups, out_dim // groups, per_group * kernel)
    out = torch.einsum("ngk,gok->ngo", windows, grouped.to(windows.dtype))
    return out.reshape(batch, frames, out_dim) + bias


def _grouped_conv_fft(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int
) -> torch.Tensor:
    """:func:`_grouped_conv_gemm`'s convolution through the FFT, in float32.

    Per frequency, each group's output channels are a product of its (out x in) weight
    spectrum with the input spectrum, so the cost no longer grows with the kernel length.
    """
    batch, frames, dim = x.shape
    out_dim, per_group, kernel = weight.shape
    size = 1 << (frames + kernel - 2).bit_length()  # a power of two >= frames + kernel - 1
    spectrum = torch.fft.rfft(
        x.float().transpose(1, 2).reshape(batch, groups, per_group, frames), n=size
    )
    # conv1d correlates; the FFT convolves: flip the kernel.
    kernels = weight.float().flip(-1).reshape(groups, out_dim // groups, per_group, kernel)
    product = torch.einsum("bgif,goif->bgof", spectrum, torch.fft.rfft(kernels, n=size))
    start = kernel - 1 - kernel // 2
    out = torch.fft.irfft(product, n=size)[..., start : start + frames]
    return out.reshape(batch, out_dim, frames).transpose(1, 2) + bias


POS_CONVS = ("cudnn", "gemm", "fft")


def position_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, impl: str
) -> torch.Tensor:
    """The position embedding's "same"-padded grouped convolution of channels-last ``x``
    (B, T, D), keeping T frames, by implementation ``impl`` (one of :data:`POS_CONVS`)."""
    if impl == "gemm":
        return _grouped_conv_gemm(x, weight, bias, groups)
    if impl == "fft":
        return _grouped_conv_fft(x, weight, bias, groups).to(x.dtype)
    kernel = weight.shape[-1]
    out = F.conv1d(x.transpose(1, 2), weight, bias, padding=kernel // 2, groups=groups)
    return out[:, :, : x.shape[1]].transpose(1, 2)


def time_position_convs(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    candidates: tuple[str, ...] = POS_CONVS,
    repeats: int = 3,
) -> dict[str, float]:
    """Seconds per forward and backward pass of each :func:`position_conv` implementation
    on tensors shaped like ``x`` and ``weight``, in the caller's autocast, after one warm-up
    pass each (cuDNN's algorithm choice, FFT plans); eager, not compiled."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    inputs = [t.detach().requires_grad_() for t in (x, weight, bias)]
    seconds = {}
    with torch.enable_grad():
        for impl in candidates:
            for i in range(repeats + 1):
                if i == 1:
                    sync()
                    started = time.perf_counter()
                out = position_conv(*inputs, groups, impl)
                torch.autograd.grad(out.float().sum(), inputs)
            sync()
            seconds[impl] = (time.perf_counter() - started) / repeats
    return seconds


def _features(
    wavs: torch.Tensor,
    first_lengths: torch.Tensor,
    conv_weights: list[torch.Tensor],
    conv_biases: list[torch.Tensor | None],
    norm_weights: list[torch.Tensor | None],
    norm_biases: list[torch.Tensor | None],
    fp_ln_w: torch.Tensor,
    fp_ln_b: torch.Tensor,
    proj_w: torch.Tensor,
    proj_b: torch.Tensor,
    s: _Static,
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms (B, N) -> (projected features (B, T, D), layer-normed CNN output (B, T, C)).

    The group norm (BASE) takes its statistics over the ``first_lengths`` valid frames of the
    first convolution's output, as :class:`~sslgrid.models.wav2vec2.MaskedGroupNorm` does."""
    if s.conv_gemm:
        x = wavs[:, :, None]
        for i, (w, b, stride) in enumerate(
            zip(conv_weights, conv_biases, s.conv_strides, strict=True)
        ):
            x = _conv_gemm(x, w, b, stride)
            if s.group_norm and i == 0:
                x = masked_group_norm(
                    x, first_lengths, s.norm_groups, norm_weights[0], norm_biases[0], 1e-5, True
                )
            elif not s.group_norm:
                x = F.layer_norm(x, (x.shape[-1],), norm_weights[i], norm_biases[i], eps=1e-5)
            x = F.gelu(x)
    else:
        x = wavs[:, None, :]
        for i, (w, b, stride) in enumerate(
            zip(conv_weights, conv_biases, s.conv_strides, strict=True)
        ):
            x = F.conv1d(x, w, b, stride=stride)
            if s.group_norm and i == 0:
                x = masked_group_norm(
                    x, first_lengths, s.norm_groups, norm_weights[0], norm_biases[0], 1e-5
                )
            elif not s.group_norm:
                x = F.layer_norm(
                    x.transpose(1, 2), (x.shape[1],), norm_weights[i], norm_biases[i], eps=1e-5
                ).transpose(1, 2)
            x = F.gelu(x)
        x = x.transpose(1, 2)
    x = _scale_grad(x, s.feature_grad_mult)
    normed = F.layer_norm(x, (x.shape[-1],), fp_ln_w, fp_ln_b, eps=s.layer_norm_eps)
    hidden = F.dropout(F.linear(normed, proj_w, proj_b), s.feat_proj_dropout, training)
    return hidden, normed


def _context_input(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor,
    mask_embed: torch.Tensor,
    pos_g: torch.Tensor,
    pos_v: torch.Tensor,
    pos_b: torch.Tensor,
    ln_w: torch.Tensor,
    ln_b: torch.Tensor,
    s: _Static,
    training: bool,
) -> torch.Tensor:
    """Masked frames replaced, padding zeroed, convolutional position embedding added."""
    x = torch.where(mask[..., None], mask_embed.to(hidden.dtype), hidden)
    x = x * valid[..., None].to(x.dtype)
    weight = torch._weight_norm(pos_v, pos_g, 2)
    x = x + F.gelu(position_conv(x, weight, pos_b, s.pos_groups, s.pos_conv))
    if not s.pre_ln:
        x = F.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps=s.layer_norm_eps)
    return F.dropout(x, s.hidden_dropout, training)


def _layer(
    x: torch.Tensor,
    key_mask: torch.Tensor | None,
    qkv_w: torch.Tensor,
    qkv_b: torch.Tensor,
    out_w: torch.Tensor,
    out_b: torch.Tensor,
    ln1_w: torch.Tensor,
    ln1_b: torch.Tensor,
    ff1_w: torch.Tensor,
    ff1_b: torch.Tensor,
    ff2_w: torch.Tensor,
    ff2_b: torch.Tensor,
    ln2_w: torch.Tensor,
    ln2_b: torch.Tensor,
    s: _Static,
    training: bool,
) -> torch.Tensor:
    """One Transformer layer (post-LN as BASE, or pre-LN as LARGE / XLSR)."""
    batch, frames, dim = x.shape
    eps = s.layer_norm_eps

    def attention(h: torch.Tensor) -> torch.Tensor:
        qkv = F.linear(h, qkv_w, qkv_b).view(batch, frames, 3, s.num_heads, dim // s.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=s.attention_dropout if training else 0.0
        )
        a = F.linear(a.transpose(1, 2).reshape(batch, frames, dim), out_w, out_b)
        return F.dropout(a, s.hidden_dropout, training)

    def feed_forward(h: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.gelu(F.linear(h, ff1_w, ff1_b)), s.activation_dropout, training)
        return F.dropout(F.linear(h, ff2_w, ff2_b), s.hidden_dropout, training)

    if s.pre_ln:
        x = x + attention(F.layer_norm(x, (dim,), ln1_w, ln1_b, eps=eps))
        return x + feed_forward(F.layer_norm(x, (dim,), ln2_w, ln2_b, eps=eps))
    x = F.layer_norm(x + attention(x), (dim,), ln1_w, ln1_b, eps=eps)
    return F.layer_norm(x + feed_forward(x), (dim,), ln2_w, ln2_b, eps=eps)


def _loss(
    context: torch.Tensor,
    normed: torch.Tensor,
    mask: torch.Tensor,
    negatives: torch.Tensor,
    temperature: torch.Tensor,
    final_ln_w: torch.Tensor | None,
    final_ln_b: torch.Tensor | None,
    q_w: torch.Tensor,
    q_b: torch.Tensor,
    codevectors: torch.Tensor,
    hid_w: torch.Tensor,
    hid_b: torch.Tensor,
    projq_w: torch.Tensor,
    projq_b: torch.Tensor,
    s: _Static,
    training: bool,
) -> torch.Tensor:
    """Contrastive + weighted diversity loss, summed over masked frames, over their number."""
    batch, frames, _ = context.shape
    groups, num_vars = s.num_groups, s.num_vars
    if s.pre_ln:
        context = F.layer_norm(
            context, (context.shape[-1],), final_ln_w, final_ln_b, eps=s.layer_norm_eps
        )
    # Quantiser: Gumbel-softmax (hard, straight-through) choice of one codevector per group.
    features = F.dropout(normed, s.quantizer_dropout, training)
    logits = F.linear(features, q_w, q_b).float().view(batch * frames * groups, num_vars)
    if training:
        choice = F.gumbel_softmax(logits, tau=temperature, hard=True)
        soft = torch.softmax(logits, dim=-1)
    else:
        choice = F.one_hot(logits.argmax(-1), num_vars).to(logits.dtype)
        soft = choice
    index = choice.argmax(-1).view(batch, frames, groups)
    book = codevectors.view(groups, num_vars, -1).float()
    quantized = torch.einsum("ngv,gvd->ngd", choice.view(-1, groups, num_vars), book)
    quantized = quantized.reshape(batch, frames, -1)
    # Diversity: perplexity of the codebooks' average soft choice over masked frames.
    weight = mask.view(batch * frames, 1, 1).to(soft.dtype)
    num_masked = mask.sum().to(torch.float32)
    marginal = (soft.view(-1, groups, num_vars) * weight).sum(0) / num_masked.clamp_min(1.0)
    perplexity = torch.exp(-(marginal * torch.log(marginal + 1e-7)).sum(-1)).sum()
    num_codes = groups * num_vars
    diversity = (num_codes - perplexity) / num_codes * num_masked
    # Contrastive: cosine similarities of every context frame with every target of its
    # utterance, then the positive (diagonal) and the distractors gathered from them.
    c = F.normalize(F.linear(context, hid_w, hid_b).float(), dim=-1, eps=1e-8)
    q = F.normalize(F.linear(quantized, projq_w, projq_b).float(), dim=-1, eps=1e-8)
    similarity = torch.bmm(c, q.transpose(1, 2)) / s.temperature
    positive = similarity.diagonal(dim1=1, dim2=2)
    flat = negatives.view(batch, -1)
    distractors = similarity.gather(2, negatives)
    # Codevector ids per frame, all groups together: a distractor with the positive's
    # codevectors is the positive itself and is left out.
    code = (index * num_vars ** torch.arange(groups, device=index.device)).sum(-1)
    same = code.gather(1, flat).view_as(negatives) == code[..., None]
    distractors = distractors.masked_fill(same, float("-inf"))
    all_logits = torch.cat([positive[..., None], distractors], dim=-1)
    nll = torch.logsumexp(all_logits, dim=-1) - positive
    contrastive = (nll * mask.to(nll.dtype)).sum()
    loss = contrastive + s.diversity_weight * diversity
    return loss / num_masked.clamp_min(1.0)


class FastPretrainer(nn.Module):
    """Computes :meth:`Wav2Vec2.pretrain_loss`'s loss on the device, optionally compiled.

    Holds no parameters of its own: every call reads the current weights of ``upstream``, so
    it can be built once and used for the whole of training, with any optimiser. ``convs``:
    ``gemm`` runs the waveform CNN channels-last as matrix products (:func:`_conv_gemm`),
    ``cudnn`` as ``conv1d``; ``pos_conv`` likewise for the grouped convolution of the position
    embedding (:func:`_grouped_conv_gemm`), or ``fft`` (:func:`_grouped_conv_fft`), or
    ``timed``: on the first call, the fastest of the three on that batch's shape
    (:func:`time_position_convs`, logged; kept in :attr:`pos_conv`); ``auto`` is ``timed`` on
    CUDA, where cuDNN's kernel for this convolution can take most of the step, and ``cudnn``
    elsewhere, so that CPU runs do not depend on a timing. ``compile``
    compiles the four regions with ``torch.compile`` (on CUDA; CPU compilation works too but
    is slow to start). Autocast is the caller's: run it under ``torch.autocast("cuda",
    torch.bfloat16)`` for bf16 matrix products; the Gumbel softmax, the logits and the loss are
    always float32.
    """

    def __init__(
        self,
        upstream: nn.Module,
        compile: bool = False,
        convs: str = "gemm",
        pos_conv: str = "auto",
    ) -> None:
        if convs not in ("gemm", "cudnn"):
            raise ValueError(f"convs is {convs!r}; allowed: 'gemm', 'cudnn'")
        if pos_conv not in (*POS_CONVS, "timed", "auto"):
            raise ValueError(f"pos_conv is {pos_conv!r}; allowed: {[*POS_CONVS, 'timed', 'auto']}")
        super().__init__()
        # Not registered as a submodule: the upstream's parameters belong to the upstream.
        object.__setattr__(self, "upstream", upstream)
        settings = upstream.settings
        hf = upstream.model
        encoder = hf.wav2vec2.encoder
        self.shapes = _Static(
            conv_gemm=convs == "gemm",
            pos_conv=pos_conv,
            group_norm=settings.feat_extract_norm == "group",
            norm_groups=getattr(
                hf.wav2vec2.feature_extractor.conv_layers[0].layer_norm, "num_groups", 0
            ),
            pre_ln=settings.do_stable_layer_norm,
            conv_strides=tuple(settings.conv_stride),
            pos_groups=settings.num_conv_pos_embedding_groups,
            num_heads=settings.num_heads,
            num_groups=settings.num_codevector_groups,
            num_vars=settings.num_codevectors_per_group,
            num_negatives=settings.num_negatives,
            temperature=settings.contrastive_logits_temperature,
            diversity_weight=settings.diversity_loss_weight,
            feature_grad_mult=settings.feature_grad_mult,
            layer_norm_eps=hf.config.layer_norm_eps,
            feat_proj_dropout=settings.feat_proj_dropout,
            quantizer_dropout=settings.feat_quantizer_dropout,
            hidden_dropout=settings.hidden_dropout,
            attention_dropout=settings.attention_dropout,
            activation_dropout=settings.activation_dropout,
        )
        self.layerdrop = settings.layerdrop
        self.num_layers = len(encoder.layers)
        wrap: Callable = torch.compile if compile else (lambda f: f)
        self._features = wrap(_features)
        self._context_input = wrap(_context_input)
        self._layer = wrap(_layer)
        self._loss = wrap(_loss)

    @property
    def pos_conv(self) -> str:
        """The position convolution's implementation (``timed`` / ``auto`` until the first
        call has chosen one)."""
        return self.shapes.pos_conv

    def _choose_pos_conv(self, hidden: torch.Tensor, pos, bias: torch.Tensor) -> _Static:
        """Fix ``timed`` / ``auto`` to one implementation, timed on ``hidden``'s shape."""
        s = self.shapes
        if s.pos_conv == "auto" and not hidden.is_cuda:
            self.shapes = replace(s, pos_conv="cudnn")
            return self.shapes
        weight = torch._weight_norm(pos.original1, pos.original0, 2)
        seconds = time_position_convs(hidden, weight, bias, s.pos_groups)
        chosen = min(seconds, key=seconds.get)
        log.info(
            "position convolution: %s (%s per forward and backward, batch of %d x %d frames)",
            chosen,
            ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in seconds.items()),
            *hidden.shape[:2],
        )
        self.shapes = replace(s, pos_conv=chosen)
        return self.shapes

    def forward(
        self,
        wavs: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor | None = None,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean loss per masked frame; ``mask`` (B, T) and ``negatives`` (B, T, K) are drawn
        here unless given (tests pass the ones ``transformers`` gets)."""
        up = self.upstream
        s = self.shapes
        hf = up.model
        w2v = hf.wav2vec2
        training = up.training
        # Lengths are checked on the host and copied to the device without waiting for it.
        host_lengths = lengths.cpu()
        up.check_lengths(host_lengths)
        lengths = host_lengths.to(wavs.device, non_blocking=True)
        wavs = up.condition(wavs, lengths)
        frame_lengths = up.output_lengths(lengths)
        convs = w2v.feature_extractor.conv_layers
        norms = [getattr(layer, "layer_norm", None) for layer in convs]
        hidden, normed = self._features(
            wavs,
            conv_output_lengths(lengths, up._kernels_strides[:1]),
            [layer.conv.weight for layer in convs],
            [layer.conv.bias for layer in convs],
            [n.weight if n is not None else None for n in norms],
            [n.bias if n is not None else None for n in norms],
            w2v.feature_projection.layer_norm.weight,
            w2v.feature_projection.layer_norm.bias,
            w2v.feature_projection.projection.weight,
            w2v.feature_projection.projection.bias,
            s,
            training,
        )
        num_frames = hidden.shape[1]
        valid = padding_mask(frame_lengths, num_frames)
        if mask is None:
            us = up.settings
            mask = span_mask(
                frame_lengths,
                num_frames,
                us.mask_time_prob,
                us.mask_time_length,
                us.mask_time_min_masks,
            )
        mask = mask.to(hidden.device)
        if negatives is None:
            negatives = sample_distractors(mask, s.num_negatives)
        negatives = negatives.to(hidden.device)
        encoder = w2v.encoder
        pos = encoder.pos_conv_embed.conv.parametrizations.weight
        if s.pos_conv in ("timed", "auto"):
            s = self._choose_pos_conv(hidden, pos, encoder.pos_conv_embed.conv.bias)
        x = self._context_input(
            hidden,
            mask,
            valid,
            w2v.masked_spec_embed,
            pos.original0,
            pos.original1,
            encoder.pos_conv_embed.conv.bias,
            encoder.layer_norm.weight,
            encoder.layer_norm.bias,
            s,
            training,
        )
        # Padding needs a key mask (and the memory-efficient kernel); without it, flash.
        key_mask = None
        if wavs.shape[1] > int(host_lengths.min()):
            key_mask = valid[:, None, None, :]
        drops = torch.rand(self.num_layers) if training and self.layerdrop > 0 else None
        for i, layer in enumerate(encoder.layers):
            if drops is not None and float(drops[i]) < self.layerdrop:
                continue
            att = layer.attention
            x = self._layer(
                x,
                key_mask,
                torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]),
                torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]),
                att.out_proj.weight,
                att.out_proj.bias,
                layer.layer_norm.weight,
                layer.layer_norm.bias,
                layer.feed_forward.intermediate_dense.weight,
                layer.feed_forward.intermediate_dense.bias,
                layer.feed_forward.output_dense.weight,
                layer.feed_forward.output_dense.bias,
                layer.final_layer_norm.weight,
                layer.final_layer_norm.bias,
                s,
                training,
            )
        temperature = up.gumbel_temperature_tensor().to(x.device)
        loss = self._loss(
            x,
            normed,
            mask,
            negatives,
            temperature,
            encoder.layer_norm.weight if s.pre_ln else None,
            encoder.layer_norm.bias if s.pre_ln else None,
            hf.quantizer.weight_proj.weight,
            hf.quantizer.weight_proj.bias,
            hf.quantizer.codevectors,
            hf.project_hid.weight,
            hf.project_hid.bias,
            hf.project_q.weight,
            hf.project_q.bias,
            s,
            training,
        )
        if training:
            up.num_updates += 1
        return loss


def flops_per_audio_second(settings, sample_rate: int = 16000, seconds: float = 15.0) -> float:
    """Matrix-product FLOPs of one training step (forward + backward) per second of audio.

    Counts convolutions, projections, attention (QK and AV products over ``seconds``-long
    utterances) and the feed-forward layers, each as 2 FLOPs per multiply-add, times 3 for
    the backward pass (input and weight gradients). Normalisations, activations and the loss
    are left out; they move bytes rather than use the matrix units.
    """
    macs = 0.0
    rate = float(sample_rate)
    channels = 1
    for dim, kernel, stride in zip(
        settings.conv_dim, settings.conv_kernel, settings.conv_stride, strict=True
    ):
        rate /= stride
        macs += rate * dim * channels * kernel
        channels = dim
    frames = rate
    d, ff = settings.hidden_size, settings.intermediate_size
    macs += frames * channels * d  # feature projection
    macs += (
        frames
        * d
        * (d // settings.num_conv_pos_embedding_groups)
        * settings.num_conv_pos_embeddings
    )
    per_layer = 4 * d * d + 2 * d * ff + 2 * d * frames * seconds
    macs += frames * settings.num_layers * per_layer
    macs += frames * channels * settings.num_codevector_groups * settings.num_codevectors_per_group
    macs += frames * (d + settings.codevector_dim) * settings.proj_codevector_dim
    return 2.0 * 3.0 * macs
