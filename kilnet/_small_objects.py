"""The small configurable objects layers hold (regularizers, constraints): how an argument
names one, and how a config holds one.

A layer argument may be None, a name ("l2", "max_norm"), a saved config (Keras's
{"module", "class_name", "config", "registered_name"}, or kilnet's older
{"class_name", "config"}), an object of the module's classes, or a plain callable.
A config is rebuilt from the module's own table of classes, or a subclass or function
registered with kilnet.saving.register_serializable, only: a file never names code to import.
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
    if _registry.is_function_entry(identifier):   # a registered function of yours, by name
        try:
            return _registry.function_from_entry(identifier, base.__name__.lower())
        except ValueError as error:
            raise ValueError(f"{argument}: {error}") from None
    if isinstance(identifier, dict) and set(identifier) <= _CONFIG_KEYS:
        # kilnet's older {"class_name", "config"} or Keras's four keys; a class of yours by
        # its registered name
        cls = _registry.class_named(identifier.get("registered_name")
                                    or identifier.get("class_name"), by_name, base)
        if cls is not None:
            config = identifier.get("config") or {}
            if not isinstance(config, dict):
                raise ValueError(f"{argument}: a {base.__name__.lower()}'s config must be a "
                                 f"dict. Received: {argument}={identifier!r}")
            return cls.from_config(config)
    if callable(identifier) and not isinstance(identifier, type):
        return identifier
    raise ValueError(f"{argument} must be None, one of {names}, a {base.__module__} object, "
                     f"its config or a callable. Received: {argument}={identifier!r}")


def serialize(obj, by_name: dict, base: type, module: str, what: str):
    """Keras's entry for one of the module's objects, {"module", "class_name", "config",
    "registered_name"} (`module` is Keras's, e.g. "keras.regularizers"; a registered class
    of yours is written under its own module and registered name). None, a name and an
    entry already made stay as they are, as Keras's `serialize` keeps them.

    >>> class Box:
    ...     def get_config(self):
    ...         return {"size": 1}
    >>> serialize(Box(), {"Box": Box}, Box, "keras.boxes", "box")["module"]
    'keras.boxes'
    >>> serialize("box", {"Box": Box}, Box, "keras.boxes", "box")
    'box'
    """
    if obj is None or isinstance(obj, (str, dict)):
        return obj
    if not isinstance(obj, base) and callable(obj) and _registry.name_of(obj) is not None:
        return _registry.function_entry(obj, what)   # a registered function, by its name
    if not isinstance(obj, base):
        raise ValueError(f"Only {base.__module__} objects, subclasses of "
                         f"{base.__module__}.{base.__name__} and functions registered with "
                         "@kilnet.saving.register_keras_serializable() can be saved in a "
                         "config; a plain function cannot be rebuilt from a file: register it "
                         f"to save it by name. Received: {obj!r}")
    return _registry.to_config_entry(obj, by_name, module, what)


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
