"""Server-side partition assignors of the KIP-848 consumer protocol: ``uniform`` and ``range``.

Kafka's ``group.consumer.assignors`` (default ``uniform,range``; the first is the
default, a member may name another with ``group.remote.assignor``). An assignor
is a pure function: members (id, instance id, subscribed topic ids) and the
topics' partition counts in, a target assignment out; the previous target is
given so that ``uniform`` can be sticky. Pure logic, no I/O, unit-tested.

- ``uniform`` (Kafka's UniformAssignor): every member gets about the same
  number of partitions (counts differ by at most one among members with the
  same subscriptions); a partition stays with its previous target owner while
  that owner is subscribed to its topic and not above its quota, so a member
  joining or leaving moves only the partitions it must.
- ``range`` (Kafka's RangeAssignor): per topic, the partitions in contiguous
  ranges over the subscribed members in member order (instance id, then
  member id), the first ``partitions % members`` members getting one more, so
  members subscribed to co-partitioned topics get the same partition numbers.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable, Mapping

Assignment = dict[uuid.UUID, set[int]]   # topic id -> partitions


@dataclass(frozen=True, slots=True)
class MemberSubscription:
    member_id: str
    instance_id: str | None
    topics: frozenset[uuid.UUID]      # subscribed topic ids that exist


Assignor = Callable[[list[MemberSubscription], Mapping[uuid.UUID, int], Mapping[str, Assignment]],
                    dict[str, Assignment]]


def _sort_key(m: MemberSubscription) -> tuple[str, str]:
    return (m.instance_id or "", m.member_id)


def range_assign(members: list[MemberSubscription], partitions: Mapping[uuid.UUID, int],
                 previous: Mapping[str, Assignment]) -> dict[str, Assignment]:
    out: dict[str, Assignment] = {m.member_id: {} for m in members}
    ordered = sorted(members, key=_sort_key)
    for tid in sorted(partitions, key=str):
        subs = [m for m in ordered if tid in m.topics]
        if not subs:
            continue
        n = partitions[tid]
        per, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            count = per + (1 if i < extra else 0)
            if count:
                out[m.member_id][tid] = set(range(start, start + count))
            start += count
    return out


def uniform_assign(members: list[MemberSubscription], partitions: Mapping[uuid.UUID, int],
                   previous: Mapping[str, Assignment]) -> dict[str, Assignment]:
    """Sticky and balanced: keep, then fill the least loaded, then even out."""
    out: dict[str, Assignment] = {m.member_id: {} for m in members}
    if not members:
        return out
    by_id = {m.member_id: m for m in members}
    load = {m.member_id: 0 for m in members}
    total = sum(n for tid, n in partitions.items() if any(tid in m.topics for m in members))
    quota, extra = divmod(total, len(members))
    # members ordered so that the same ones get the extra partition each time
    ordered = sorted(members, key=_sort_key)
    cap = {m.member_id: quota + (1 if i < extra else 0) for i, m in enumerate(ordered)}

    def give(mid: str, tid: uuid.UUID, p: int) -> None:
        out[mid].setdefault(tid, set()).add(p)
        load[mid] += 1

    owned: set[tuple[uuid.UUID, int]] = set()
    # 1. stickiness: keep previous targets that are still valid, up to the cap
    for m in ordered:
        for tid, parts in sorted(previous.get(m.member_id, {}).items(), key=lambda kv: str(kv[0])):
            if tid not in m.topics or tid not in partitions:
                continue
            for p in sorted(parts):
                if p < partitions[tid] and (tid, p) not in owned and load[m.member_id] < cap[m.member_id]:
                    give(m.member_id, tid, p)
                    owned.add((tid, p))
    # 2. every other partition to the least loaded subscribed member
    for tid in sorted(partitions, key=str):
        subs = [m.member_id for m in ordered if tid in m.topics]
        if not subs:
            continue
        for p in range(partitions[tid]):
            if (tid, p) in owned:
                continue
            mid = min(subs, key=lambda x: (load[x] - cap[x], load[x]))
            give(mid, tid, p)
            owned.add((tid, p))
    # 3. even out (heterogeneous subscriptions): move from the most to the least loaded
    for _ in range(total + 1):
        hi = max(ordered, key=lambda m: load[m.member_id])
        moved = False
        for lo in sorted(ordered, key=lambda m: load[m.member_id]):
            if load[hi.member_id] - load[lo.member_id] <= 1:
                break
            for tid in sorted(out[hi.member_id], key=str):
                if tid in by_id[lo.member_id].topics and out[hi.member_id][tid]:
                    p = max(out[hi.member_id][tid])
                    out[hi.member_id][tid].discard(p)
                    if not out[hi.member_id][tid]:
                        del out[hi.member_id][tid]
                    load[hi.member_id] -= 1
                    give(lo.member_id, tid, p)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
    return out


ASSIGNORS: dict[str, Assignor] = {"uniform": uniform_assign, "range": range_assign}
