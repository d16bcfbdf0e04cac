"""The dependencies' warnings known to be harmless here, silenced by their message (never a whole category), for the
command line and the tests alike: any other warning still shows."""

from __future__ import annotations

import warnings

# (message regex matched at the start of the warning, category, why it is harmless)
KNOWN = (
    (
        r"`is_gradient_checkpointing` is deprecated",
        FutureWarning,
        "peft 0.21 reads transformers' deprecated property when it wraps a model",
    ),
    (
        r"`torch\.jit\.script_method` is deprecated",
        DeprecationWarning,
        "torch warns about its own TorchScript machinery when a library imports it",
    ),
)


def silence_known() -> None:
    """Ignore exactly the warnings of :data:`KNOWN`."""
    for message, category, _ in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)
