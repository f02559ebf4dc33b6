"""Small utilities shared by every layer: crash-safe writes, seeding, stable hashes, package versions, progress bars.

Exercise: `python -m pytest tests/pipeline/test_atomic_io.py`.
"""

from .atomic import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    fsync_dir,
    fsync_tree,
    is_temp_name,
    publish_directory,
    remove_stale_temp,
    temp_dir_for,
)
from .hashing import digest
from .progress import progress, progress_enabled
from .seeding import configure_threads, derive_seed, seed_everything
from .versions import package_version, package_versions

__all__ = [
    "atomic_directory", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_write_yaml",
    "configure_threads", "derive_seed", "digest", "fsync_dir", "fsync_tree", "is_temp_name", "package_version",
    "package_versions", "progress", "progress_enabled", "publish_directory", "remove_stale_temp",
    "seed_everything", "temp_dir_for",
]
