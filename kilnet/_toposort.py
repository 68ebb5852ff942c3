"""The order in which a graph's calls can run: Kahn's algorithm over "needs" sets.

A leaf module shared by the two places that replay a recorded graph (kilnet's own model
configs, kilnet.models._config, and Keras 2's list-form graphs, kilnet.keras_files), so both
order calls the same way: in the order the calls were given, each after everything it needs.
"""

from __future__ import annotations

from collections import deque


def calls_in_order(needs: dict) -> tuple[list, list]:
    """(keys in an order where each comes after the keys it needs, keys left unordered).

    `needs` maps each key to the set of keys it needs (all of them keys of `needs`); keys with
    nothing left to wait for run in the order `needs` gives them. The second list is empty
    unless the needs make a cycle. Linear in the number of keys and needs.

    Example:
        >>> from kilnet._toposort import calls_in_order
        >>> calls_in_order({"b": {"a"}, "a": set(), "c": {"a", "b"}})
        (['a', 'b', 'c'], [])
        >>> calls_in_order({"x": {"y"}, "y": {"x"}})
        ([], ['x', 'y'])
    """
    waits, readers = {}, {}
    for key, wanted in needs.items():
        waits[key] = len(wanted)
        for need in wanted:
            readers.setdefault(need, []).append(key)
    ready = deque(key for key, count in waits.items() if count == 0)
    order = []
    while ready:
        key = ready.popleft()
        order.append(key)
        for other in readers.get(key, ()):
            waits[other] -= 1
            if waits[other] == 0:
                ready.append(other)
    return order, [key for key, count in waits.items() if count]
