"""The persistent compilation cache: compiled programs kept on disk between processes.

A first run pays every structure's compilation (about 2-3 s each on the 2-core development
machine); with the cache a second process loads them instead. The `sweeps` command turns it on;
API users call `sweeps.enable_compilation_cache()` once (the library never changes JAX's
configuration on its own).

Examples:
  >>> import jax, sweeps
  >>> sweeps.enable_compilation_cache("/tmp/sweepax-cache-doctest")
  '/tmp/sweepax-cache-doctest'
  >>> jax.config.jax_compilation_cache_dir
  '/tmp/sweepax-cache-doctest'
  >>> jax.config.update("jax_compilation_cache_dir", None)  # off again, for the tests that follow
"""

from __future__ import annotations

import os

OFF = ("off", "none", "false", "0", "no")  # SWEEPS_CACHE_DIR values that turn the cache off, in any case


def enable_compilation_cache(folder: str | None = None) -> str | None:
    """Keeps compiled programs on disk, so a second run of the same structures skips compilation.

    Args:
      folder: where; default $SWEEPS_CACHE_DIR, else $XDG_CACHE_HOME/sweepax/xla, else
        ~/.cache/sweepax/xla. SWEEPS_CACHE_DIR=off (or none, false, 0, no, in any case; with no
        folder given) leaves the cache off.

    Returns:
      The folder in use, or None when it is off.
    """
    import jax

    folder = folder or os.environ.get("SWEEPS_CACHE_DIR")
    if folder is not None and folder.strip().lower() in OFF:
        return None
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "sweepax", "xla")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return folder
