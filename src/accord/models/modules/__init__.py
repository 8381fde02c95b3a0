"""Shared building blocks of Accord's models: pooling, attention, sequence encoders and heads.

Every block takes padded ``[B, T, D]`` sequences with a ``[B, T]`` validity mask (True = real step), ignores
padding exactly and never produces NaN for an empty (missing) modality.
"""

from accord.models.modules.attention import (
    GELU,
    CrossmodalTransformer,
    CrossmodalTransformerLayer,
    Dropout,
    FeedForward,
    MultiheadAttention,
    SinusoidalPositionalEmbedding,
    safe_key_mask,
    shared_positions,
    sinusoidal_positions,
)
from accord.models.modules.decoupling import DecoupledSequences, Decoupling
from accord.models.modules.encoders import (
    EncodedSequence,
    SequenceEncoder,
    TemporalConv1d,
    build_encoder,
    encode_pooled,
    encode_pooled_stacked,
    one_step_encoders,
)
from accord.models.modules.heads import MLPHead, ResidualMLPHead
from accord.models.modules.pooling import (
    downsample_mean,
    last_valid,
    masked_max,
    masked_mean,
    masked_std,
    pool,
)
from accord.models.modules.resample import masked_resample
from accord.models.params.encoders import EncoderParams, PoolMode

__all__ = [
    "CrossmodalTransformer",
    "CrossmodalTransformerLayer",
    "DecoupledSequences",
    "Decoupling",
    "EncodedSequence",
    "EncoderParams",
    "Dropout",
    "FeedForward",
    "GELU",
    "MLPHead",
    "MultiheadAttention",
    "PoolMode",
    "ResidualMLPHead",
    "SequenceEncoder",
    "SinusoidalPositionalEmbedding",
    "TemporalConv1d",
    "build_encoder",
    "encode_pooled",
    "encode_pooled_stacked",
    "one_step_encoders",
    "downsample_mean",
    "last_valid",
    "masked_max",
    "masked_mean",
    "masked_resample",
    "masked_std",
    "pool",
    "safe_key_mask",
    "shared_positions",
    "sinusoidal_positions",
]
