"""Profiles: every cardholder's features at a snapshot date, encoded for one model (`_profiles`), the
checked, immutable snapshot folders they are served from (`_snapshots`), and the cache of their
model-encoded copies that every worker on a machine maps read-only (`_cache`).

Imports the contract, features and model rooms.
"""

from nba.profiles._cache import (
    PRUNE_GRACE_S,
    cached_entry_of,
    cached_profiles,
    find_cached_profiles,
    open_cache_entry,
    prune_profile_cache,
)
from nba.profiles._profiles import (
    CONTACT_COLUMNS,
    Profiles,
    assemble_profiles,
    build_profiles,
    compute_profile_tables,
    contact_history_sql,
    estimate_spend,
)
from nba.profiles._snapshots import (
    CONTACT_FILE,
    CURRENT_FILE,
    FEATURES_FILE,
    HISTORY_FILE,
    HISTORY_TABLE_COLUMNS,
    SnapshotInfo,
    SnapshotManifest,
    SnapshotParts,
    check_snapshot,
    list_snapshots,
    new_snapshot_dir,
    parse_snapshot_name,
    profiles_from_snapshot,
    pull_snapshot,
    read_current_snapshot,
    resolve_snapshot,
    set_current_snapshot,
    write_snapshot,
    write_snapshot_parts,
)

__all__ = [
    "CONTACT_COLUMNS",
    "CONTACT_FILE",
    "CURRENT_FILE",
    "FEATURES_FILE",
    "HISTORY_FILE",
    "HISTORY_TABLE_COLUMNS",
    "PRUNE_GRACE_S",
    "Profiles",
    "SnapshotInfo",
    "SnapshotManifest",
    "SnapshotParts",
    "assemble_profiles",
    "build_profiles",
    "cached_entry_of",
    "cached_profiles",
    "check_snapshot",
    "compute_profile_tables",
    "contact_history_sql",
    "estimate_spend",
    "find_cached_profiles",
    "list_snapshots",
    "new_snapshot_dir",
    "open_cache_entry",
    "parse_snapshot_name",
    "profiles_from_snapshot",
    "prune_profile_cache",
    "pull_snapshot",
    "read_current_snapshot",
    "resolve_snapshot",
    "set_current_snapshot",
    "write_snapshot",
    "write_snapshot_parts",
]
