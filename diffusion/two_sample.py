"""Classifier two-sample test: can a small network tell two sets of events apart?

A two-layer MLP is trained to separate set A (label 0) from set B (label 1) on half of each,
and scored on the other half. The score is the ROC AUC from the Mann-Whitney U statistic
(AUC = U / (n_a n_b)): 0.5 means the classifier cannot tell them apart, 1.0 that it always can.
Lopez-Paz and Oquab (2017) call this a classifier two-sample test; CaloChallenge 2022 uses it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from diffusion.errors import ConfigError

HIDDEN = 64
EPOCHS = 30


def auc(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """ROC AUC of scores meant to be higher for B than for A (ties count one half)."""
    u = stats.mannwhitneyu(scores_b, scores_a, alternative="two-sided").statistic
    return float(u / (len(scores_a) * len(scores_b)))


def classifier_auc(a: np.ndarray, b: np.ndarray, *, seed: int = 0, epochs: int = EPOCHS) -> float:
    """Train on half of each set (features standardised on the training half), return the
    held-out AUC.

    Row i of ``a`` and of ``b`` share a truth (the same event, simulated twice or simulated
    and generated), so the split is by row for both: a split drawn per set would put a
    truth's twin in training under the other label, and a classifier that learns truths
    would score below 0.5 on the held-out half.

    Raises:
        ConfigError: the sets differ in length or hold fewer than 4 rows.
    """
    import keras

    if len(a) != len(b) or len(a) < 4:
        raise ConfigError(f"the two sets must be paired rows of equal length >= 4, but got {len(a)} and {len(b)}.")
    n = len(a)
    order = np.random.default_rng(seed).permutation(n)
    a, b = a[order].astype(np.float32), b[order].astype(np.float32)
    half = n // 2
    x_train = np.concatenate([a[:half], b[:half]])
    y_train = np.concatenate([np.zeros(half), np.ones(half)]).astype(np.float32)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((a.shape[1],)),
            keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit((x_train - mean) / std, y_train, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    score_a = model.predict((a[half:] - mean) / std, batch_size=1024, verbose=0).ravel()
    score_b = model.predict((b[half:] - mean) / std, batch_size=1024, verbose=0).ravel()
    return auc(score_a, score_b)
