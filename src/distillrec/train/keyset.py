"""A set of non-negative int64 keys with vectorised membership: an open-addressing hash table
(linear probing) built and queried with whole-tensor ops.

Why: the negative sampler asks "is (user, item) a training positive?" for every draw. Binary
search over the sorted keys costs a sort of the whole log to set up (O(N log N)) and
O(log N) scattered reads per draw, so both grow with the log. Here set-up is O(N) (no sort)
and a query takes O(1) expected probes (the table is at most half full), whatever the log size.

Build: each round scatters the still-unplaced keys into the slots they hash to that are empty,
reads back which keys won, and moves the losers one slot on (linear probing). Duplicate keys
are fine: a key that finds itself already in its slot counts as placed. Which of several
competing keys wins a slot is up to the scatter (and may differ between runs on a GPU); the
set's answers do not depend on it. Lookup: rounds of probing only the still-undecided queries
until each meets its key (member) or an empty slot (not a member).

Memory: the table is 2-4 int64 slots per key (8 bytes each), e.g. 1 GiB for 50M keys.
"""

from __future__ import annotations

import torch

# Fibonacci hashing: multiply by 2^64 / golden ratio (wrapping), keep the top bits.
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)  # the same 64 bits as a signed int64
_EMPTY = -1  # keys are >= 0, so -1 marks a free slot
# Lookup rounds probe one slot per query while many queries are undecided; once at most _FEW
# are, each round reads _WINDOW consecutive slots per query (a key sits at most once in the
# table, so a hit anywhere in the window is a member; an empty slot in it with no hit is not):
# the few long probe chains then take a handful of rounds, not dozens of tiny ones.
_FEW = 4096
_WINDOW = 16


class KeySet:
    """Membership of int64 keys >= 0: `KeySet(keys).contains(queries)` -> bool tensor shaped like
    queries (negative queries are never members). Lives on the device of `keys`."""

    def __init__(self, keys: torch.Tensor):
        keys = keys.reshape(-1).to(torch.long)
        if keys.numel() and int(keys.min()) < 0:
            raise ValueError("KeySet keys must be >= 0")
        # A power of two >= 2 x keys (load factor <= 1/2), at least 2 slots.
        self._bits = max(1, (2 * keys.numel() - 1).bit_length())
        self._mask = (1 << self._bits) - 1
        self._table = torch.full((1 << self._bits,), _EMPTY, dtype=torch.long, device=keys.device)
        self._window = torch.arange(_WINDOW, device=keys.device)
        pending, slots = keys, self._hash(keys)
        self._table[slots] = pending  # all slots are empty: every key bids for its home slot
        while True:
            # Lost: the slot went to another key (in this round's race or an earlier one).
            lost = torch.nonzero(self._table[slots] != pending).squeeze(1)
            if lost.numel() == 0:
                break
            pending, slots = pending[lost], (slots[lost] + 1) & self._mask
            empty = torch.nonzero(self._table[slots] == _EMPTY).squeeze(1)
            self._table[slots[empty]] = pending[empty]  # one of the keys aimed at a slot wins it

    @property
    def device(self) -> torch.device:
        return self._table.device

    def _hash(self, keys: torch.Tensor) -> torch.Tensor:
        # int64 multiplication wraps; an arithmetic shift plus the mask keeps the top _bits bits.
        hashed = keys * _GOLDEN
        hashed >>= 64 - self._bits
        return hashed.bitwise_and_(self._mask)  # in place: no temporaries the size of the keys

    def contains(self, queries: torch.Tensor) -> torch.Tensor:
        flat = queries.reshape(-1).to(torch.long)
        slots = self._hash(flat)
        found = self._table[slots]
        member = (found == flat) & (flat >= 0)
        # Undecided: the slot holds another key; probe on for those queries only.
        todo = torch.nonzero((found != flat) & (found != _EMPTY) & (flat >= 0)).squeeze(1)
        wanted, slots = flat[todo], (slots[todo] + 1) & self._mask
        while todo.numel():
            if todo.numel() > _FEW:
                found = self._table[slots]
                hit, undecided, step = found == wanted, (found != wanted) & (found != _EMPTY), 1
            else:
                window = self._table[(slots.unsqueeze(1) + self._window) & self._mask]
                hit = (window == wanted.unsqueeze(1)).any(1)
                undecided, step = ~hit & (window != _EMPTY).all(1), _WINDOW
            member[todo[hit]] = True
            keep = torch.nonzero(undecided).squeeze(1)
            todo, wanted, slots = todo[keep], wanted[keep], (slots[keep] + step) & self._mask
        return member.view(queries.shape)

    def __len__(self) -> int:
        """Distinct keys held (one pass over the table)."""
        return int((self._table != _EMPTY).sum())
