"""The small configurable objects layers hold (regularizers, constraints): how an argument
names one, and how a config holds one.

A layer argument may be None, a name ("l2", "max_norm"), a saved config
({"class_name": ..., "config": {...}}), an object of the module's classes, or a plain callable.
A config is rebuilt from the module's own table of classes only: a file never names code to
import.
"""

from __future__ import annotations

from kilnet import _registry

_CONFIG_KEYS = {"class_name", "config", "module", "registered_name"}


class SmallObject:
    """Base of the configurable objects: the config is the constructor's arguments, equality
    is equality of class and config, and the repr shows them.

    >>> class Scale(SmallObject):
    ...     def __init__(self, factor=2.0):
    ...         self.factor = factor
    ...     def get_config(self):
    ...         return {"factor": self.factor}
    >>> Scale.from_config({"factor": 3.0}), Scale() == Scale(2.0)
    (Scale(factor=3.0), True)
    """

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):  # equal objects hash alike (the config may hold lists)
        return hash(type(self).__name__)


def resolve(identifier, by_name: dict, base: type, argument: str, names: str):
    """The object an argument names (see the module docstring); `names` lists the accepted
    names for the error message.

    >>> class Box:
    ...     def __init__(self, size=1):
    ...         self.size = size
    ...     @classmethod
    ...     def from_config(cls, config):
    ...         return cls(**config)
    >>> resolve({"class_name": "Box", "config": {"size": 3}}, {"Box": Box}, Box, "box",
    ...         "'box'").size
    3
    """
    if identifier is None or isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str) and identifier in by_name:
        return by_name[identifier]()
    if isinstance(identifier, dict) and set(identifier) <= _CONFIG_KEYS \
            and identifier.get("class_name") in by_name:
        config = identifier.get("config") or {}
        if not isinstance(config, dict):
            raise ValueError(f"{argument}: a {base.__name__.lower()}'s config must be a dict. "
                             f"Received: {argument}={identifier!r}")
        return by_name[identifier["class_name"]].from_config(config)
    if callable(identifier) and not isinstance(identifier, type):
        return identifier
    raise ValueError(f"{argument} must be None, one of {names}, a {base.__module__} object, "
                     f"its config or a callable. Received: {argument}={identifier!r}")


def serialize(obj, by_name: dict, base: type) -> dict | None:
    """{"class_name", "config"} of one of the module's objects (None stays None).

    >>> class Box:
    ...     def get_config(self):
    ...         return {"size": 1}
    >>> serialize(Box(), {"Box": Box}, Box)
    {'class_name': 'Box', 'config': {'size': 1}}
    """
    if obj is None:
        return None
    if not isinstance(obj, base) or by_name.get(type(obj).__name__) is not type(obj):
        raise ValueError(f"Only {base.__module__} objects can be saved in a config; a plain "
                         "function or your own class cannot be rebuilt from a file. "
                         f"Received: {obj!r}")
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def deserialize(config, by_name: dict, base: type, what: str):
    """The object a config describes, as Keras's `deserialize`: a name ("max_norm"), a
    {"class_name", "config"} entry with or without Keras's "module" / "registered_name", of
    one of the module's classes or a registered subclass of `base`.

    >>> class Box:
    ...     def __init__(self, size=1):
    ...         self.size = size
    ...     @classmethod
    ...     def from_config(cls, config):
    ...         return cls(**config)
    >>> deserialize({"module": "keras.boxes", "class_name": "Box", "config": {"size": 3},
    ...              "registered_name": None}, {"Box": Box}, Box, "box").size
    3
    """
    if isinstance(config, str):
        if config not in by_name:
            raise ValueError(f"Unknown {what} {config!r}: expected one of {sorted(by_name)} or "
                             f"a config {{'class_name': ..., 'config': {{...}}}}. Received: "
                             f"config={config!r:.100}")
        return by_name[config]()
    return _registry.from_config_entry(config, by_name, base, what)
