"""Hyperparameter search: Optuna studies over the training knobs and model size."""

from diffusion.hpo.search import SearchConfig, create_study, load_study, make_objective, work
from diffusion.hpo.space import SEARCH_SPACE, apply_params, check_params, load_best

__all__ = [
    "SEARCH_SPACE",
    "SearchConfig",
    "apply_params",
    "check_params",
    "create_study",
    "load_best",
    "load_study",
    "make_objective",
    "work",
]
