"""The running batch's KV cache: one slot per request, left-padded to a common length, joined and left per step.

Every row keeps its own keys and values (a slot of per-layer buffers), its attention-mask row (zeros over its
left padding), its next position id (counting its own tokens only, so padding never shifts a row's positions)
and the token it has sampled but not yet fed. The buffers (`SlotLayer`, one per decoder layer) have spare
slots and spare columns, and the model sees views of the used part, so nothing is copied that did not change:

* a decode step writes one column in place (where `transformers`' `DynamicLayer` concatenates, copying the
  whole cache every step);
* `join` writes the prefilled rows of new requests into free slots, left-padded to the batch's length (when
  a prompt is longer than that, the existing rows get more left padding instead);
* `keep` (rows finished) moves the last rows into the freed slots, copying only the rows that move;
* columns that are padding in every remaining row are dropped from the left by moving a view's start.

Measured on the tiny profile's model (32 rows, one thread) these copies had cost more than the model's matmuls.
The buffers sit in a `DynamicCache` whose layers are `SlotLayer`s, so any causal LM whose forward takes
`attention_mask`, `position_ids` and a cache runs unchanged (plain, ternary BitLinear, packed 2-bit). Needs
transformers' per-layer caches (`transformers.cache_utils.DynamicLayer`, 4.56 and later). Models with
sliding-window layers get full-length layers here (correct, not memory-optimal).

Exercise: `pytest tests/serve/test_engine.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from ..errors import ForgeError

try:
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover - transformers < 4.56
    DynamicLayer = None

SPARE_COLUMNS = 64  # free columns after the used ones when a buffer is (re)allocated; it at least doubles


def require_layer_caches() -> None:
    if DynamicLayer is None:  # pragma: no cover
        raise ForgeError("serving needs transformers >= 4.56 (per-layer KV caches); upgrade transformers")


class SlotLayer(DynamicLayer if DynamicLayer is not None else object):  # type: ignore[misc]
    """One decoder layer's keys/values for every row: views `[:rows, :, start:start+length]` of larger buffers."""

    def _allocate(self, keys: torch.Tensor, values: torch.Tensor, slots: int, columns: int) -> None:
        self._k = keys.new_zeros((slots, keys.shape[1], columns, keys.shape[3]))
        self._v = values.new_zeros((slots, values.shape[1], columns, values.shape[3]))

    def adopt(self, keys: torch.Tensor, values: torch.Tensor, slots: int = 0) -> "SlotLayer":
        """Start from these (rows, heads, length, dim) tensors, with room for `slots` rows in all."""
        rows, length = keys.shape[0], keys.shape[2]
        self._allocate(keys, values, max(slots, rows), length + SPARE_COLUMNS)
        self._k[:rows, :, :length] = keys
        self._v[:rows, :, :length] = values
        self.rows, self.start, self.length = rows, 0, length
        self.device = keys.device
        self.is_initialized = True
        self._views()
        return self

    def _views(self) -> None:
        self.keys = self._k[: self.rows, :, self.start : self.start + self.length]
        self.values = self._v[: self.rows, :, self.start : self.start + self.length]

    def _reserve(self, slots: int, left: int, right: int) -> None:
        """Make sure of `slots` slots, `left` free columns before the used ones and `right` after them."""
        have_slots, columns = self._k.shape[0], self._k.shape[2]
        if slots <= have_slots and left <= self.start and self.start + self.length + right <= columns:
            return
        keys, values = self.keys, self.values
        self._allocate(keys, values, max(slots, have_slots), left + self.length + max(right, SPARE_COLUMNS, self.length))
        self._k[: self.rows, :, left : left + self.length] = keys
        self._v[: self.rows, :, left : left + self.length] = values
        self.start = left
        self._views()

    # --- what the model calls

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.adopt(key_states, value_states)
            return self.keys, self.values
        new = key_states.shape[-2]
        self._reserve(self.rows, 0, new)
        end = self.start + self.length
        self._k[: self.rows, :, end : end + new] = key_states
        self._v[: self.rows, :, end : end + new] = value_states
        self.length += new
        self._views()
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0 and self.is_initialized:
            self.length = max(0, self.length + tokens_to_remove)
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.adopt(self.keys[indices], self.values[indices], slots=self._k.shape[0])

    # --- what BatchState calls

    def add_rows(self, keys: torch.Tensor, values: torch.Tensor, slots: int) -> None:
        """Append rows (b, heads, l, dim), left-padded with zeros to the common length."""
        count, length = keys.shape[0], keys.shape[2]
        grow = max(0, length - self.length)
        self._reserve(max(slots, self.rows + count), grow, 0)
        if grow:  # a longer prompt: every existing row gets `grow` more columns of (zero) left padding
            self.start -= grow
            self.length += grow
            self._k[: self.rows, :, self.start : self.start + grow] = 0
            self._v[: self.rows, :, self.start : self.start + grow] = 0
        first, pad = self.rows, self.length - length
        for buffer, rows in ((self._k, keys), (self._v, values)):
            buffer[first : first + count, :, self.start : self.start + pad] = 0
            buffer[first : first + count, :, self.start + pad : self.start + self.length] = rows
        self.rows += count
        self._views()

    def move_rows(self, source: torch.Tensor, target: torch.Tensor, rows: int) -> None:
        """Copy the used columns of slots `source` into slots `target`, then keep the first `rows` slots."""
        if len(source):
            span = slice(self.start, self.start + self.length)
            self._k[target, :, span] = self._k[source, :, span]
            self._v[target, :, span] = self._v[source, :, span]
        self.rows = rows
        self._views()

    def drop_left(self, columns: int) -> None:
        self.start += columns
        self.length -= columns
        self._views()


def new_cache() -> DynamicCache:
    """An empty cache for a prefill (plain DynamicLayers: it is copied into the batch's slots right after)."""
    return DynamicCache()


def layer_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(tensor, [length - tensor.shape[-1], 0]) if tensor.shape[-1] < length else tensor


class BatchState:
    """The rows being decoded together; `items[i]` is the caller's object for row i."""

    def __init__(self, max_rows: int = 32) -> None:
        require_layer_caches()
        self.max_rows = max_rows
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (rows, length) long, 1 = real token
        self.next_position: torch.Tensor | None = None  # (rows, 1) long
        self.last_tokens: torch.Tensor | None = None  # (rows,) long: sampled, not yet fed
        self.items: list = []

    def __len__(self) -> int:
        return len(self.items)

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def join(self, cache, mask: torch.Tensor, next_position: torch.Tensor, last_tokens: torch.Tensor, items: list) -> None:
        """Add prefilled rows (their cache, mask, next positions, first sampled tokens) to the batch."""
        if not items:
            return
        pairs = layer_tensors(cache)
        if not self.items:
            self.cache = DynamicCache()
            self.cache.layers = [SlotLayer().adopt(k, v, slots=self.max_rows) for k, v in pairs]
            self.mask, self.next_position, self.last_tokens = mask, next_position, last_tokens
            self.items = list(items)
            return
        for layer, (keys, values) in zip(self.cache.layers, pairs):
            layer.add_rows(keys, values, self.max_rows)
        length = max(self.length, mask.shape[1])
        self.mask = torch.cat([_pad_left(self.mask, length), _pad_left(mask, length)])
        self.next_position = torch.cat([self.next_position, next_position])
        self.last_tokens = torch.cat([self.last_tokens, last_tokens])
        self.items.extend(items)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (their order in the batch may change); drop padding columns nobody needs."""
        if len(rows) == len(self.items):
            return
        if not rows:
            self.clear()
            return
        count, kept = len(rows), set(rows)
        freed = [r for r in range(count) if r not in kept]  # slots inside the new range whose row leaves
        movers = [r for r in rows if r >= count]  # kept rows outside it, moved into the freed slots
        order = list(range(count))
        for target, source in zip(freed, movers):
            order[target] = source
        device = self.mask.device
        source, target = torch.tensor(movers, dtype=torch.long, device=device), torch.tensor(freed, dtype=torch.long, device=device)
        for layer in self.cache.layers:
            layer.move_rows(source, target, count)
        index = torch.tensor(order, dtype=torch.long, device=device)
        self.mask, self.next_position, self.last_tokens = self.mask[index], self.next_position[index], self.last_tokens[index]
        self.items = [self.items[r] for r in order]
        first = int(self.mask.argmax(dim=1).min())  # left of every row's first real token: padding for all
        if first > 0:
            for layer in self.cache.layers:
                layer.drop_left(first)
            self.mask = self.mask[:, first:]

    def clear(self) -> None:
        self.cache = self.mask = self.next_position = self.last_tokens = None
        self.items = []
