"""The analytic footprint: counts from layer shapes, and the parts each phase adds."""

from __future__ import annotations

import pytest

from bench.footprint import Footprint, LayerShape, footprint, layer_shapes


def two_layer_model():
    import keras

    x = keras.Input((3,), name="x")
    h = keras.layers.Dense(4, name="hidden")(x)
    y = keras.layers.Dense(2, name="out")(h)
    return keras.Model(x, y)


def test_layer_shapes_read_outputs_and_trainable_values():
    shapes = layer_shapes(two_layer_model())
    assert [(s.name, s.output_values, s.params) for s in shapes] == [
        ("x", 3, 0),
        ("hidden", 4, 3 * 4 + 4),
        ("out", 2, 4 * 2 + 2),
    ]


def test_ops_between_layers_count_as_activations():
    import keras

    x = keras.Input((5,))
    y = keras.layers.Dense(5)(x) * x  # an op, not a layer, whose output the backward pass keeps
    assert footprint(layer_shapes(keras.Model(x, y))).activations_per_sample == 5 + 5 + 5


def test_parts_of_a_known_model():
    fp = footprint(layer_shapes(two_layer_model()))
    assert (fp.params, fp.activations_per_sample) == (26, 9)
    assert (fp.parameter_bytes, fp.gradient_bytes, fp.optimizer_bytes) == (104, 104, 208)
    assert fp.activation_bytes(10) == 10 * 9 * 4
    assert fp.train_total_bytes(10) == 104 + 104 + 208 + 360


def test_training_adds_gradients_and_activations_validation_only_activations():
    fp = Footprint(params=1000, activations_per_sample=50)
    assert fp.growth_bytes("train", 64) == 1000 * 4 + 64 * 50 * 4
    assert fp.growth_bytes("validate", 64) == 64 * 50 * 4
    assert fp.growth_bytes("validate", 128) == 2 * fp.growth_bytes("validate", 64)


def test_checkpoint_holds_weights_and_two_adam_moments():
    assert Footprint(params=1000, activations_per_sample=1).checkpoint_bytes == 3 * 1000 * 4


def test_footprint_sums_hand_written_shapes():
    fp = footprint([LayerShape("a", 10, 5), LayerShape("b", 7)], bytes_per_value=2)
    assert (fp.params, fp.activations_per_sample, fp.parameter_bytes) == (5, 17, 10)


def test_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="must be train or validate"):
        Footprint(1, 1).growth_bytes("sample", 1)


def test_denoiser_params_match_keras_count(tiny, tiny_data):
    from diffusion.model import build_denoiser

    model = build_denoiser(tiny_data.train.x.shape[1], tiny_data.train.cond.shape[1], tiny.model)
    assert footprint(layer_shapes(model)).params == model.count_params()
