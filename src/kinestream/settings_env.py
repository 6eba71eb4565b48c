"""Which environment variables configure kinestream, without loading the configuration.

``config.Settings`` reads every ``KINESTREAM_*`` variable (names match whatever their case,
as pydantic-settings does by default); the offline commands check this first and skip the
validating configuration (pydantic: ~0.2 s of start-up) when there is none and no file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV_PREFIX = "KINESTREAM_"


def has_settings_variables(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether any variable would configure ``config.Settings``."""
    return any(name.upper().startswith(ENV_PREFIX) for name in environ)
