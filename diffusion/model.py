"""The denoiser: a residual MLP with a sinusoidal time embedding and
scale-and-shift (FiLM) conditioning, written with backend-neutral Keras 3 layers and ops.

Its output is what ``DiffusionConfig.prediction`` names: v (the presets) or the noise. The
layers keep their first names (``eps_head``, ``eps``) so that every checkpoint still loads."""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from diffusion.presets import ModelConfig


@keras.saving.register_keras_serializable(package="diffusion")
class SinusoidalEmbedding(layers.Layer):
    """Timestep t (N, 1) -> [sin(t w_i), cos(t w_i)] with log-spaced frequencies (Vaswani et al.)."""

    def __init__(self, dim: int, max_period: float = 10_000.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim, self.max_period = dim, max_period

    def call(self, t):
        half = self.dim // 2
        freqs = ops.exp(-math.log(self.max_period) * ops.arange(half, dtype="float32") / half)
        args = ops.cast(t, "float32") * freqs[None, :]
        return ops.concatenate([ops.sin(args), ops.cos(args)], axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "max_period": self.max_period}


def residual_block(h, context, width: int, expansion: int, name: str):
    """LayerNorm -> FiLM(context) -> MLP, added back to h. The last layer starts at zero, so
    every block starts as the identity and deep stacks train from the first step."""
    y = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(h)
    scale = layers.Dense(width, kernel_initializer="zeros", name=f"{name}_scale")(context)
    shift = layers.Dense(width, kernel_initializer="zeros", name=f"{name}_shift")(context)
    y = y * (1.0 + scale) + shift
    y = layers.Dense(width * expansion, activation="silu", name=f"{name}_up")(y)
    y = layers.Dense(width, kernel_initializer="zeros", name=f"{name}_down")(y)
    return layers.Add(name=f"{name}_residual")([h, y])


def build_denoiser(n_features: int, cond_dim: int, config: ModelConfig) -> keras.Model:
    """The denoiser: inputs ``[x_t, t, cond]``, output the prediction (N, n_features): v or the noise."""
    x_t = keras.Input((n_features,), name="x_t")
    t = keras.Input((1,), name="t")
    cond = keras.Input((cond_dim,), name="cond")
    width = config.hidden_dim
    temb = SinusoidalEmbedding(config.time_embed_dim, name="time_embedding")(t)
    temb = layers.Dense(width, activation="silu", name="time_mlp_1")(temb)
    temb = layers.Dense(width, name="time_mlp_2")(temb)
    cemb = layers.Dense(width, activation="silu", name="cond_mlp_1")(cond)
    cemb = layers.Dense(width, name="cond_mlp_2")(cemb)
    context = layers.Activation("silu", name="context")(layers.Add(name="context_sum")([temb, cemb]))
    h = layers.Dense(width, name="input_projection")(x_t)
    for i in range(config.blocks):
        h = residual_block(h, context, width, config.expansion, name=f"block_{i}")
    h = layers.LayerNormalization(epsilon=1e-5, name="output_norm")(h)
    # A per-sample gated skip from x_t: at large t the best guess of the noise is nearly x_t
    # itself, which a stack narrower than the features (hidden_dim < 2 x PMTs) cannot pass
    # through. Without it the validation loss stalled near 0.87 at every preset; it costs one
    # (width -> 1) Dense and an elementwise product.
    gate = layers.Dense(1, kernel_initializer="zeros", name="skip_gate")(context)
    eps = layers.Add(name="eps")([layers.Dense(n_features, name="eps_head")(h), x_t * gate])
    return keras.Model([x_t, t, cond], eps, name="pmt_denoiser")
