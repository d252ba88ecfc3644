"""Which images a shard takes: shard i of n of a split is `sorted(names)[i::n]`, out of the first
`limit` sorted names when a limit is given.

Detection (`cirflow.boxes.shards`), the image features (`cirflow.model.features`) and the image
manifests (`cirflow.data.manifest`) all cut a split by this one rule, so that a shard's manifest
lists the images its jobs read. Each image's result depends on that image only, so merged
results do not depend on n.
"""

from __future__ import annotations

from collections.abc import Iterable

from cirflow.errors import CirflowError


def shard_names(
    names: Iterable[str], shard: int, num_shards: int, limit: int | None = None
) -> list[str]:
    """The names of shard `shard` of `num_shards`: `sorted(names)[:limit][shard::num_shards]`."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise CirflowError(f"shard {shard} of {num_shards} does not exist")
    selected = sorted(names)
    if limit is not None:
        selected = selected[:limit]
    return selected[shard::num_shards]
