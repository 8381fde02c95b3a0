"""Models: the registry and every method.

Importing this package is light (no torch): the names below are bound on first use (a module ``__getattr__``),
the built-in models register with :data:`~accord.models.base.MODELS` on its first look-up
(:data:`accord.models.params.BUILTIN_MODELS`), and what a config needs of a built-in method (its ``Params``,
``default_loss_weights``, hooks) is in :mod:`accord.models.params`, without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from accord.core.lazy import lazy_attribute

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__ below
    from accord.models.base import AccordModel, create_model, list_models, register_model
    from accord.models.params import ModelParams

#: Each name of :data:`__all__` -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "AccordModel": "accord.models.base",
    "ModelParams": "accord.models.params",
    "create_model": "accord.models.base",
    "list_models": "accord.models.base",
    "register_model": "accord.models.base",
}

__all__ = ["AccordModel", "ModelParams", "create_model", "list_models", "register_model"]


def __getattr__(name: str) -> Any:
    """``accord.models.<name>``: an exported name (imported on first use) or a submodule (``accord.models.tfn``)."""
    return lazy_attribute(__name__, _EXPORTS, globals(), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
