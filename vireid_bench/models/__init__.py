"""Reference models that write feature dumps (the only place torch is imported).

Nothing here imports torch at module import time; the model code does so when it runs,
and a missing ``model`` extra is reported in one line by :func:`require_torch`.
"""

from __future__ import annotations

TORCH_HINT = "this command needs PyTorch: pip install 'vireid-bench[model]'"


def require_torch() -> None:
    """Raise :class:`ImportError` with a one-line install hint when torch is missing."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise ImportError(TORCH_HINT) from exc
