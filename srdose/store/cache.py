"""A short-lived, per-store cache of what the web pages compute from many rows.

Used for values that change slowly and cost a scan: the filter's choices, the overview, a unit's
charts, each kept as long as the caller says (``[web] cache_seconds``). Concurrent misses of one
key compute it once; the others wait for that result.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

#: Per store (forgotten with it): key -> (monotonic time, value).
_cache: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, Any]]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
#: One lock per store and key, so that concurrent misses compute once and the others wait.
_key_locks: weakref.WeakKeyDictionary[Any, dict[str, threading.Lock]] = weakref.WeakKeyDictionary()


def _fresh(store, key: str, seconds: float) -> tuple[bool, Any]:
    hit = _cache.get(store, {}).get(key)
    if hit is not None and time.monotonic() - hit[0] < seconds:
        return True, hit[1]
    return False, None


def cached(store, key: str, compute: Callable[[], Any], seconds: float) -> Any:
    """``compute()``, kept ``seconds`` for ``store`` under ``key``; concurrent misses compute it
    once. Callers must not change what it returns (it is shared). ``seconds`` 0: not kept."""
    if seconds <= 0:
        return compute()
    with _cache_lock:
        ok, value = _fresh(store, key, seconds)
        if ok:
            return value
        lock = _key_locks.setdefault(store, {}).setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            ok, value = _fresh(store, key, seconds)
        if ok:
            return value
        value = compute()
        with _cache_lock:
            _cache.setdefault(store, {})[key] = (time.monotonic(), value)
        return value
