"""The one decorator for numba kernels: compiled once, its machine code cached on disk when it can be.

Every compiled kernel in nba (the tree walker, attribution, the matrix fill, arbitration, reasons, the
engine's gathers) is declared with `@compiled`, so how numba is asked to compile lives in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

_Function = TypeVar("_Function", bound=Callable[..., Any])


def compiled(function: _Function) -> _Function:
    """`function` compiled by numba (`njit`), its machine code cached on disk for the next process.

    numba caches next to the module (`__pycache__`) or else in the user's cache directory; when it can
    write to neither (a read-only install and no writable home) it refuses `cache=True` outright, so the
    function is then compiled in memory, once per process.
    """
    try:
        return cast(_Function, numba.njit(cache=True)(function))
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return cast(_Function, numba.njit(function))
