"""Models: the registry and every method. Importing this package registers all built-in models."""

# Registration side effects: one import line per model file.
import accord.models.cacr  # noqa: F401
import accord.models.cpsl  # noqa: F401
import accord.models.ebmc  # noqa: F401
import accord.models.lmf  # noqa: F401
import accord.models.misa  # noqa: F401
import accord.models.self_mm  # noqa: F401
from accord.models import early_fusion, late_fusion, mult, tfn, unimodal  # noqa: F401
from accord.models.base import AccordModel, ModelParams, create_model, list_models, register_model

__all__ = ["AccordModel", "ModelParams", "create_model", "list_models", "register_model"]
