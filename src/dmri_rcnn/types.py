"""Type aliases shared across the package."""

from __future__ import annotations

import os

#: A file path as the package's functions take it: a ``str`` or any ``os.PathLike`` (e.g. ``pathlib.Path``).
PathLike = str | os.PathLike
