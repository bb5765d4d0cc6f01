"""wav2vec 2.0 (Baevski et al., 2020) on top of the ``transformers`` implementation.

A convolutional feature encoder turns the waveform into latent frames (20 ms hop), a Transformer
builds context from them, and pre-training masks spans of latent frames and asks the context
vector at each masked frame to pick the Gumbel-quantised latent of that frame out of distractors
sampled from other masked frames of the same utterance. ``transformers`` supplies the network,
the quantiser and the loss; this module decides which frames are masked and which distractors are
drawn (only valid frames, reproducibly from torch's RNG), schedules the Gumbel temperature, and
exposes the hidden states through the upstream contract.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import Wav2Vec2Config

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.upstream import (
    UpstreamOutput,
    WaveformUpstream,
    conv_output_lengths,
    padding_mask,
)

FEATURE_NORMS = ("group", "layer")


def masked_group_norm(
    x: torch.Tensor,
    frame_lengths: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    channels_last: bool = False,
) -> torch.Tensor:
    """Group norm of padded frames with statistics over each utterance's valid frames only.

    ``x`` is (B, C, T), or (B, T, C) with ``channels_last``; the result is float32 (as group
    norm under autocast) and, on valid frames, equal to group norm of the utterance alone.
    """
    x = x.float()
    if channels_last:
        x = x.transpose(1, 2)
    batch, channels, frames = x.shape
    valid = padding_mask(frame_lengths.to(x.device), frames)[:, None, None, :]
    grouped = x.reshape(batch, num_groups, channels // num_groups, frames)
    count = (frame_lengths.to(x.device, torch.float32) * (channels // num_groups)).clamp_min(1)
    count = count[:, None, None, None]
    mean = (grouped * valid).sum((2, 3), keepdim=True) / count
    var = ((grouped - mean) * valid).pow(2).sum((2, 3), keepdim=True) / count
    out = ((grouped - mean) * torch.rsqrt(var + eps)).reshape(batch, channels, frames)
    if weight is not None:
        out = out * weight[:, None] + bias[:, None]
    return out.transpose(1, 2) if channels_last else out


class MaskedGroupNorm(torch.nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters) that, while :attr:`frame_lengths` is set, takes its
    statistics over the valid frames of each utterance only (:func:`masked_group_norm`)."""

    frame_lengths: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frame_lengths is None:
            return super().forward(x)
        return masked_group_norm(
            x, self.frame_lengths, self.num_groups, self.weight, self.bias, self.eps
        )


@dataclass(frozen=True)
class Wav2Vec2Settings:
    """wav2vec 2.0 architecture and pre-training objective; the defaults are the paper's BASE.

    Args:
        conv_dim: output channels of each feature-encoder convolution.
        conv_kernel: kernel size of each feature-encoder convolution, in samples / frames.
        conv_stride: stride of each feature-encoder convolution; their product is the hop.
        conv_bias: whether the feature-encoder convolutions have a bias (XLSR: yes, BASE: no).
        feat_extract_norm: ``"group"``: one group norm after the first convolution, statistics
            over each utterance (BASE); ``"layer"``: a layer norm per frame after every
            convolution (LARGE / XLSR).
        hidden_size: Transformer width, i.e. the output dimension of every hidden state.
        num_layers: Transformer layers.
        num_heads: attention heads per layer.
        intermediate_size: width of the Transformer feed-forward layers.
        num_conv_pos_embeddings: kernel of the convolutional relative position embedding.
        num_conv_pos_embedding_groups: groups of that convolution.
        do_stable_layer_norm: pre-layer-norm Transformer with a final layer norm (LARGE / XLSR)
            instead of post-layer-norm (BASE).
        hidden_dropout: dropout on the Transformer's residual branches and its input.
        attention_dropout: dropout on attention weights.
        activation_dropout: dropout after the feed-forward activation.
        feat_proj_dropout: dropout on the projected features entering the Transformer.
        feat_quantizer_dropout: dropout on the features entering the quantiser.
        layerdrop: probability of skipping a whole Transformer layer during training.
        num_codevector_groups: codebooks G of the quantiser.
        num_codevectors_per_group: entries V per codebook.
        codevector_dim: size of a quantised latent (all groups concatenated).
        proj_codevector_dim: size of the space in which context and targets are compared.
        mask_time_prob: fraction of frames chosen as mask-span starts, times the span length;
            spans overlap, so about ``1 - exp(-mask_time_prob)`` of the frames end up masked.
        mask_time_length: frames per masked span.
        mask_time_min_masks: spans per utterance at least (if it is long enough).
        num_negatives: distractors per masked frame, from masked frames of the same utterance.
        contrastive_logits_temperature: temperature of the cosine-similarity logits.
        diversity_loss_weight: weight of the codebook-diversity term.
        gumbel_temperature_max: Gumbel-softmax temperature at the first update.
        gumbel_temperature_min: floor of the temperature.
        gumbel_temperature_decay: factor per update: ``max(max * decay**updates, min)``.
        feature_grad_mult: scales the gradient flowing into the feature encoder (0.1 in the
            paper's BASE recipe, for stability); 1.0 leaves it alone.
        normalize_waveform: normalise each utterance to zero mean, unit variance over its valid
            samples before the encoder, as XLSR / LARGE checkpoints expect.
    """

    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.1
    feat_quantizer_dropout: float = 0.1
    layerdrop: float = 0.05
    num_codevector_groups: int = 2
    num_codevectors_per_group: int = 320
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    mask_time_prob: float = 0.65
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    num_negatives: int = 100
    contrastive_logits_temperature: float = 0.1
    diversity_loss_weight: float = 0.1
    gumbel_temperature_max: float = 2.0
    gumbel_temperature_min: float = 0.5
    gumbel_temperature_decay: float = 0.999995
    feature_grad_mult: float = 1.0
    normalize_waveform: bool = False

    def __post_init__(self) -> None:
        # config.yaml and JSON give lists; tuples keep the dataclass hashable and immutable.
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ValueError(
                "conv_dim, conv_kernel and conv_stride need one entry per convolution, got "
                f"{len(self.conv_dim)}, {len(self.conv_kernel)} and {len(self.conv_stride)}"
            )
        if self.feat_extract_norm not in FEATURE_NORMS:
            raise ValueError(
                f"feat_extract_norm is {self.feat_extract_norm!r}; allowed: {list(FEATURE_NORMS)}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.num_heads}")
        if not 0 < self.mask_time_prob <= 1:
            # transformers only creates the mask embedding for a positive probability.
            raise ValueError(f"mask_time_prob is {self.mask_time_prob}; it must be in (0, 1]")
        if self.codevector_dim % self.num_codevector_groups:
            raise ValueError(
                f"codevector_dim {self.codevector_dim} is not divisible by "
                f"num_codevector_groups {self.num_codevector_groups}"
            )

    def to_dict(self) -> dict:
        """JSON-compatible constructor arguments (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def downsample_rate(self) -> int:
        return int(np.prod(self.conv_stride))

    def to_hf_config(self) -> Wav2Vec2Config:
        # transformers is imported where it is used: loading it takes seconds, which every job
        # that imports the model registry would otherwise pay, wav2vec 2.0 or not.
        from transformers import Wav2Vec2Config

        return Wav2Vec2Config(
            conv_dim=list(self.conv_dim),
            conv_kernel=list(self.conv_kernel),
            conv_stride=list(self.conv_stride),
            conv_bias=self.conv_bias,
            feat_extract_norm=self.feat_extract_norm,
            feat_extract_activation="gelu",
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            hidden_act="gelu",
            num_conv_pos_embeddings=self.num_conv_pos_embeddings,
            num_conv_pos_embedding_groups=self.num_conv_pos_embedding_groups,
            do_stable_layer_norm=self.do_stable_layer_norm,
            hidden_dropout=self.hidden_dropout,
            attention_dropout=self.attention_dropout,
            activation_dropout=self.activation_dropout,
            feat_proj_dropout=self.feat_proj_dropout,
            feat_quantizer_dropout=self.feat_quantizer_dropout,
            layerdrop=self.layerdrop,
            num_codevector_groups=self.num_codevector_groups,
            num_codevectors_per_group=self.num_codevectors_per_group,
            codevector_dim=self.codevector_dim,
            proj_codevector_dim=self.proj_codevector_dim,
            # We pass explicit masks; these only make transformers create the mask embedding.
            apply_spec_augment=True,
            mask_time_prob=self.mask_time_prob,
            mask_time_length=self.mask_time_length,
            mask_time_min_masks=self.mask_time_min_masks,
            mask_feature_prob=0.0,
            num_negatives=self.num_negatives,
            contrastive_logits_temperature=self.contrastive_logits_temperature,
            diversity_loss_weight=self.diversity_loss_weight,
        )


def wav2vec2_base(**overrides) -> Wav2Vec2Settings:
    """The paper's BASE as in the reference table: 12 x 768 Transformer, about 95 M parameters.

    Dropouts, layer drop and the feature-encoder gradient scale follow fairseq's BASE
    pre-training recipe.
    """
    return Wav2Vec2Settings(**{"feature_grad_mult": 0.1, **overrides})


def wav2vec2_tiny(**overrides) -> Wav2Vec2Settings:
    """A CPU-sized model with the standard 320-sample hop and the paper's masking.

    The convolutions are narrowest where the frame rate is highest, the Transformer has two
    layers, and the codebooks (2 x 64), comparison space (32) and distractors (50) are cut
    down, because the quantiser and the contrastive logits cost time per frame and distractor
    rather than per parameter. One pre-training step then runs above 100 seconds of audio per
    second on a single CPU thread, so the whole grid runs in CI.
    """
    tiny = {
        "conv_dim": (16, 16, 32, 32, 32, 32, 32),
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_size": 256,
        "num_conv_pos_embeddings": 64,
        "num_conv_pos_embedding_groups": 8,
        "hidden_dropout": 0.1,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "feat_proj_dropout": 0.1,
        "feat_quantizer_dropout": 0.0,
        "layerdrop": 0.0,
        "num_codevectors_per_group": 64,
        "codevector_dim": 32,
        "proj_codevector_dim": 32,
        "num_negatives": 50,
    }
    return Wav2Vec2Settings(**{**tiny, **overrides})


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


@contextmanager
def numpy_rng_from_torch() -> Iterator[None]:
    """Run numpy's global RNG from a seed drawn from torch's, then restore numpy's state.

    transformers' mask and negative samplers use ``np.random``; seeding it from torch makes a
    run that seeds and checkpoints torch's RNG reproducible, without disturbing other users of
    numpy's global state.
    """
    saved = np.random.get_state()
    np.random.seed(int(torch.randint(0, 2**32 - 1, ()).item()))
    try:
        yield
    finally:
        np.random.set_state(saved)


class Wav2Vec2(WaveformUpstream):
    """wav2vec 2.0 as an upstream.

    Hidden states are the Transformer input (projected features plus position embedding) and
    the output of each layer; for the pre-layer-norm variant the last one includes the final
    layer norm, i.e. it is the model's output. Time masking and layer drop are applied in
    :meth:`pretrain_loss` only: :meth:`forward` never masks and never drops a layer, so it
    always returns ``num_layers`` hidden states (dropout still applies in training mode).

    Padding: the Transformer gets an attention mask, so padded frames are never attended to,
    and padded samples are zeroed first. With ``feat_extract_norm="group"`` (BASE) the first
    convolution's group norm takes its statistics over each utterance's valid frames only
    (:class:`MaskedGroupNorm`; ``transformers`` and fairseq take them over the padded row, and
    fairseq therefore crops BASE batches instead of padding them). Valid frames are thus
    independent of padding with either norm: an utterance encodes the same alone or in any
    batch, in pre-training as in fine-tuning.
    """

    feature_encoder_prefixes = ("model.wav2vec2.feature_extractor.",)

    def __init__(self, settings: Wav2Vec2Settings, fbank: FbankConfig | None = None) -> None:
        super().__init__()
        self.settings = settings
        from transformers import Wav2Vec2ForPreTraining

        self.model = Wav2Vec2ForPreTraining(settings.to_hf_config())
        self.output_dim = settings.hidden_size
        self.num_layers = settings.num_layers + 1
        self._kernels_strides = tuple(zip(settings.conv_kernel, settings.conv_stride, strict=True))
        # Counts optimiser updates for the Gumbel schedule; a buffer, so checkpoints carry it.
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        first = self.model.wav2vec2.feature_extractor.conv_layers[0]
        if settings.feat_extract_norm == "group":
            norm = first.layer_norm
            masked = MaskedGroupNorm(norm.num_groups, norm.num_channels, norm.eps, norm.affine)
            masked.load_state_dict(norm.state_dict())
            first.layer_norm = masked
        if settings.feature_grad_mult != 1.0:
            self.model.wav2vec2.feature_extractor.register_forward_hook(self._scale_feature_grad)

    def _scale_feature_grad(self, module, inputs, output: torch.Tensor) -> torch.Tensor:
        return _ScaleGrad.apply(output, self.settings.feature_grad_mult)

    @property
    def downsample_rate(self) -> int:
        return self.settings.downsample_rate

    @property
    def receptive_field(self) -> int:
        """Samples that one output frame sees (400 for the standard encoder)."""
        field = 1
        for kernel, stride in reversed(self._kernels_strides):
            field = (field - 1) * stride + kernel
        return field

    def gumbel_temperature_tensor(self) -> torch.Tensor:
        """:attr:`gumbel_temperature` computed where ``num_updates`` lives (no host sync)."""
        s = self.settings
        log_decay = math.log(s.gumbel_temperature_decay)
        decayed = s.gumbel_temperature_max * torch.exp(self.num_updates.double() * log_decay)
        return decayed.clamp_min(s.gumbel_temperature_min).float()

    def use_fast_pretraining(
        self,
        enabled: bool = True,
        compile: bool = False,
        convs: str = "gemm",
        pos_conv: str = "auto",
    ) -> None:
        """Compute :meth:`pretrain_loss` with :class:`FastPretrainer` (same loss, drawn on the
        device, optionally compiled) instead of ``transformers``' pre-training forward."""
        from sslgrid.models.wav2vec2_fast import FastPretrainer

        fast = (
            FastPretrainer(self, compile=compile, convs=convs, pos_conv=pos_conv)
            if enabled
            else None
        )
        # A plain attribute, not a submodule: it holds no parameters of its own.
        object.__setattr__(self, "_fast_pretrainer", fast)

    @property
    def gumbel_temperature(self) -> float:
        s = self.settings
        decayed = s.gumbel_temperature_max * s.gumbel_temperature_decay ** int(self.num_updates)
        return max(decayed, s.gumbel_temperature_min)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames per utterance for ``lengths`` valid samples."""
        return conv_output_lengths(lengths, self._kernels_strides)

    def check_lengths(self, lengths: torch.Tensor) -> None:
        """Refuse utterances shorter than one frame's receptive field."""
        too_short = lengths < self.receptive_field
        if too_short.any():
            raise ValueError(
                f"utterances of {lengths[too_short].tolist()} samples are shorter than one "
                f"frame ({self.receptive_field} samples)"
            )

    def condition(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Zero the padding and, if configured, normalise each utterance over its valid part."""
        valid = padding_mask(lengths, wavs.shape[1])
        wavs = wavs.float() * valid
        if self.settings.normalize_waveform:
            n = lengths[:, None].to(wavs.dtype)
            mean = wavs.sum(1, keepdim=True) / n
            var = ((wavs - mean) * valid).pow(2).sum(1, keepdim=True) / n
            # 1e-7 as in transformers' Wav2Vec2FeatureExtractor, which XLSR was evaluated with.
            wavs = (wavs - mean) / torch.sqrt(var + 1e-7) * valid
        return wavs

    def _condition(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.check_lengths(lengths)
        return self.condition(wavs, lengths)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        wavs = self._condition(wavs, lengths)
        frame_lengths = self.output_lengths(lengths)
        num_frames = int(self.output_lengths(torch.tensor([wavs.shape[1]]))[0])
        no_mask = torch.zeros(wavs.shape[0], num_frames, dtype=torch.bool, device=wavs.device)
        with self._without_layerdrop(), self.valid_frames(lengths):
            out = self.model.wav2vec2(
                wavs,
                attention_mask=padding_mask(lengths, wavs.shape[1]).long(),
                # An empty mask keeps transformers from SpecAugment-masking in training mode.
                mask_time_indices=no_mask,
                output_hidden_states=True,
            )
        hidden_states = list(out.hidden_states)
        # transformers records the last layer before the final layer norm of the pre-LN variant.
        hidden_states[-1] = out.last_hidden_state
        return UpstreamOutput(hidden_states, frame_lengths)

    @contextmanager
    def valid_frames(self, lengths: torch.Tensor) -> Iterator[None]:
        """Within this context ``self.model``'s group norm (BASE) skips the padding of a batch
        with ``lengths`` valid samples per utterance; a no-op for the layer-norm encoder."""
        norm = self.model.wav2vec2.feature_extractor.conv_layers[0].layer_norm
        if not isinstance(norm, MaskedGroupNorm):
            yield
            return
        norm.frame_lengths = conv_output_lengths(lengths, self._kernels_strides[:1])
        try:
            yield
        finally:
            norm.frame_lengths = None

    @contextmanager
    def _without_layerdrop(self) -> Iterator[None]:
        # A dropped layer records no hidden state, so the downstream would get a varying
        # number of them; layer drop therefore regularises pre-training only.
        config = self.model.config
        layerdrop, config.layerdrop = config.layerdrop, 0.0
        try:
            yield
        finally:
            config.layerdrop = layerdrop

    def sample_time_mask(self, frame_lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, T) boolean span mask over valid frames only, drawn via :func:`numpy_rng_from_torch`.

        Utterances that would get fewer than two masked frames get none: a masked frame needs
        at least one other masked frame as a distractor.
        """
        s = self.settings
        if num_frames < s.mask_time_length:
            raise ValueError(
                f"batch of {num_frames} frames is shorter than one mask span "
                f"({s.mask_time_length} frames)"
            )
        from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

        valid = padding_mask(frame_lengths.cpu(), num_frames)
        with numpy_rng_from_torch():
            mask = _compute_mask_indices(
                (len(frame_lengths), num_frames),
                mask_prob=s.mask_time_prob,
                mask_length=s.mask_time_length,
                attention_mask=valid,
                min_masks=s.mask_time_min_masks,
            )
        # transformers pads rows with no room for a span with a dummy index on the last frame,
        # which is padding for every row shorter than the batch.
        mask = torch.from_numpy(mask) & valid
        mask[mask.sum(1) < 2] = False
        return mask

    def sample_negatives(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, num_negatives) flat indices of distractors for every masked frame.

        Distractors are other masked frames of the same utterance, as in the paper; rows
        without masked frames get placeholder indices, which the loss ignores.
        """
        from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

        sampling_mask = mask.clone()
        sampling_mask[mask.sum(1) == 0, :2] = True
        with numpy_rng_from_torch():
            negatives = _sample_negative_indices(
                tuple(mask.shape), self.settings.num_negatives, sampling_mask.numpy()
            )
        return torch.from_numpy(negatives).long()

    def pretrain_loss(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Contrastive plus weighted diversity loss, averaged over masked frames.

        transformers sums both terms over the masked frames of the batch; dividing by their
        number makes the loss (and so the learning rate) independent of batch size and
        utterance length. Each call in training mode counts as one update of the Gumbel
        temperature schedule, so call it once per optimiser step (with gradient accumulation
        the schedule runs faster by the accumulation factor).
        """
        fast = getattr(self, "_fast_pretrainer", None)
        if fast is not None:
            return fast(wavs, lengths)
        wavs = self._condition(wavs, lengths)
        frame_lengths = self.output_lengths(lengths)
        num_frames = int(self.output_lengths(torch.tensor([wavs.shape[1]]))[0])
        mask = self.sample_time_mask(frame_lengths, num_frames)
        negatives = self.sample_negatives(mask)
        if self.training:
            self.model.set_gumbel_temperature(self.gumbel_temperature)
        with self.valid_frames(lengths):
            out = self.model(
                wavs,
                attention_mask=padding_mask(lengths, wavs.shape[1]).long(),
                mask_time_indices=mask.to(wavs.device),
                sampled_negative_indices=negatives.to(wavs.device),
            )
        if self.training:
            self.num_updates += 1
        return out.loss / mask.sum().clamp_min(1).to(out.loss.device)
