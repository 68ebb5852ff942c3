"""The registry of your classes and functions that model files may name ("package>Name").

Why a module of its own: `kilnet.saving.register_serializable` fills it, and layers read it
(a Lambda layer saves its function by registered name), while saving itself builds on the
layers; both import this small table instead of each other.
"""

from __future__ import annotations

_BY_NAME: dict = {}   # "package>Name" (or a name you chose) -> class or function
_scope: dict = {}     # the objects of the innermost custom_object_scope, if one is open


def register(name: str, obj) -> None:
    """Record `obj` under `name` (a later registration of the name replaces it).

    Example:
        >>> def doc_noop(x):
        ...     return x
        >>> register("Doc>noop", doc_noop)
        >>> lookup("Doc>noop") is doc_noop, name_of(doc_noop)
        (True, 'Doc>noop')
    """
    _BY_NAME[name] = obj


def name_of(obj):
    """The registered name of a class or function (its latest registration), or None."""
    # The table is small, and entries may also arrive through get_custom_objects()'s dict.
    for name, registered_obj in reversed(_BY_NAME.items()):
        if registered_obj is obj:
            return name
    return None


def lookup(name: str):
    """The class or function registered under `name`, or None: the open custom object
    scope's objects first, then the registry."""
    if name in _scope:
        return _scope[name]
    return _BY_NAME.get(name)


def registered() -> dict:
    """A copy of the registry: {"package>Name": object}, with the open scope's objects."""
    return {**_BY_NAME, **_scope}


def global_table() -> dict:
    """The registry itself (Keras's `get_custom_objects()`): what you add to it is registered.

    Example:
        >>> global_table()["doc_len"] = len
        >>> lookup("doc_len") is len
        True
        >>> del global_table()["doc_len"]
    """
    return _BY_NAME


def open_scope(objects: dict) -> dict:
    """Make `objects` the open scope (replacing the previous one, as Keras's scopes do);
    returns the previous scope for `close_scope`.

    Example:
        >>> previous = open_scope({"doc_abs": abs})
        >>> lookup("doc_abs") is abs
        True
        >>> close_scope(previous); lookup("doc_abs") is None
        True
    """
    global _scope
    previous, _scope = _scope, dict(objects)
    return previous


def close_scope(previous: dict) -> None:
    """Restore the scope `open_scope` replaced."""
    global _scope
    _scope = previous


def widen_scope(objects: dict) -> dict:
    """Open a scope holding the open scope's objects and `objects` (a load_model's
    custom_objects, which the layers it makes look their functions up in, as Keras's
    loading does); returns the previous scope for `close_scope`.

    Example:
        >>> outer = open_scope({"doc_abs": abs})
        >>> inner = widen_scope({"doc_min": min})
        >>> lookup("doc_abs") is abs and lookup("doc_min") is min   # both, where open_scope
        True
        >>> close_scope(inner); close_scope(outer)                  # would replace the first
    """
    return open_scope({**_scope, **objects})


def class_named(name, builtins: dict, base: type):
    """The class a config names: one of `builtins` (kilnet's own, by name), else a subclass
    of `base` registered under that name; None for anything else.

    Example:
        >>> class Base: ...
        >>> class Mine(Base): ...
        >>> register("Doc>Mine", Mine)
        >>> class_named("Doc>Mine", {}, Base) is Mine, class_named("os.system", {}, Base)
        (True, None)
    """
    if not isinstance(name, str):
        return None
    cls = builtins.get(name) or lookup(name)
    return cls if isinstance(cls, type) and issubclass(cls, base) else None


def from_config_entry(config, builtins: dict, base: type, what: str):
    """The object a {"class_name", "config"} entry describes: a class of `builtins` or a
    registered subclass of `base` (class_named; Keras's entries name one in
    "registered_name"), made by its from_config; ValueError naming `what` otherwise. Nothing
    else is created.

    Example:
        >>> class Box:
        ...     def __init__(self, size=1):
        ...         self.size = size
        ...     @classmethod
        ...     def from_config(cls, config):
        ...         return cls(**config)
        >>> from_config_entry({"class_name": "Box", "config": {"size": 3}}, {"Box": Box}, Box,
        ...                   "box").size
        3
    """
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"A {what}'s config is {{'class_name': ..., 'config': {{...}}}}. "
                         f"Received: {config!r:.100}")
    name = config.get("registered_name") or config.get("class_name")
    cls = class_named(name, builtins, base)
    if cls is None:
        raise ValueError(f"Unknown {what} {name!r:.100}: expected one of {sorted(builtins)} "
                         f"or a {base.__name__} subclass registered with "
                         "@kilnet.saving.register_serializable().")
    try:
        return cls.from_config(dict(config.get("config") or {}))
    except TypeError as error:
        raise ValueError(f"The {what} {name} has an invalid config: {error}") from None


FUNCTION = "function"   # the class_name of Keras's entry for a function


def function_entry(fn, what="function") -> dict:
    """Keras's entry for a function of yours registered with
    `kilnet.saving.register_keras_serializable`, as Keras's `serialize_keras_object` writes
    it (a layer's initializer, compile's loss): {"module": "builtins", "class_name":
    "function", "config": its registered name, "registered_name": "function"}; Keras and
    kilnet find the function by that name in their registries. A function that is not
    registered is a ValueError naming `what` (a file can name registered functions only),
    with the fix.

    Example:
        >>> def doc_double(x):
        ...     return 2 * x
        >>> register("Doc>double", doc_double)
        >>> function_entry(doc_double)
        {'module': 'builtins', 'class_name': 'function', 'config': 'Doc>double', \
'registered_name': 'function'}
    """
    name = name_of(fn)
    if name is None:
        raise ValueError(
            f"The {what} {getattr(fn, '__qualname__', fn)!r:.80} cannot be written to a file: "
            "files name functions, never hold their code. Register it with "
            "@kilnet.saving.register_keras_serializable(package=..., name=...) (and with "
            "keras.saving.register_keras_serializable on Keras's side) to save it by name.")
    return {"module": "builtins", "class_name": FUNCTION, "config": name,
            "registered_name": FUNCTION}


def is_function_entry(value) -> bool:
    """Whether `value` is Keras's entry for a function ({"class_name": "function", ...})."""
    return isinstance(value, dict) and value.get("class_name") == FUNCTION


def function_named(entry, custom_objects=None):
    """The function of yours a function entry names (its registered name, as Keras looks it
    up): in `custom_objects`, the open custom object scope or the registry; None otherwise
    (nothing is imported).

    Example:
        >>> def doc_absolute(x):
        ...     return abs(x)
        >>> register("Doc>absolute", doc_absolute)
        >>> function_named({"class_name": "function", "config": "Doc>absolute",
        ...                 "registered_name": "function"}) is doc_absolute
        True
        >>> function_named({"class_name": "function", "config": "os.system"}) is None
        True
    """
    name = entry.get("registered_name")
    name = name if isinstance(name, str) and name != FUNCTION else entry.get("config")
    if not isinstance(name, str):
        return None
    found = (custom_objects or {}).get(name) or lookup(name)
    return found if callable(found) and not isinstance(found, type) else None


def function_from_entry(entry, what="function"):
    """function_named (the open scope holds a load_model's custom_objects), or a ValueError
    naming `what` that says how to register it."""
    found = function_named(entry)
    if found is None:
        raise ValueError(
            f"The {what} {entry.get('config')!r:.80} is a function that is not registered in "
            "this program: register it with @kilnet.saving.register_keras_serializable("
            "package=..., name=...) under that name before loading (files name functions, "
            "never hold their code).")
    return found


def user_module(obj):
    """The module Keras writes for a class or function of yours: None for a script's own
    (`__main__` could not be imported elsewhere), so that the registered name finds it."""
    module = getattr(obj, "__module__", None)
    return None if module in (None, "__main__") else module


def config_entry(cls, config: dict, keras_module=None) -> dict:
    """Keras's entry for an object of class `cls` whose get_config() is `config`:
    {"module", "class_name", "config", "registered_name"}, as Keras's
    `serialize_keras_object` writes it. kilnet's own classes are written under Keras's
    module (`keras_module`, e.g. "keras.initializers") with no registered name; a class of
    yours (`keras_module` None) under its own module (None for a script's) and its
    registered name (its class name when it is not registered, as Keras writes it).

    Example:
        >>> class Box: ...
        >>> entry = config_entry(Box, {"size": 1}, "keras.boxes")
        >>> entry["module"], entry["class_name"], entry["config"], entry["registered_name"]
        ('keras.boxes', 'Box', {'size': 1}, None)
        >>> register("Doc>Box", Box)
        >>> config_entry(Box, {})["registered_name"]
        'Doc>Box'
    """
    if keras_module is not None:
        return {"module": keras_module, "class_name": cls.__name__, "config": config,
                "registered_name": None}
    return {"module": user_module(cls), "class_name": cls.__name__, "config": config,
            "registered_name": name_of(cls) or cls.__name__}


def to_config_entry(obj, builtins: dict, module: str, what: str, strict: bool = True) -> dict:
    """Keras's entry for an object (config_entry): one of `builtins` (kilnet's own classes,
    by name) under Keras's `module`, or a registered class under its registered name. Any
    other object is a ValueError naming `what` (nothing else could be rebuilt from a file),
    unless `strict` is False: then an unregistered class is written under its class name,
    which loading finds only in the `custom_objects` given.

    Example:
        >>> class Box:
        ...     def get_config(self):
        ...         return {"size": 1}
        >>> entry = to_config_entry(Box(), {"Box": Box}, "keras.boxes", "box")
        >>> entry["module"], entry["class_name"], entry["config"], entry["registered_name"]
        ('keras.boxes', 'Box', {'size': 1}, None)
    """
    cls = type(obj)
    if builtins.get(cls.__name__) is cls:
        return config_entry(cls, obj.get_config(), module)
    if strict and (name_of(cls) is None or not hasattr(obj, "get_config")):
        raise ValueError(f"Only kilnet's {what} classes and classes registered with "
                         "@kilnet.saving.register_serializable() can be written to a config. "
                         f"Received: {obj!r:.100}")
    return config_entry(cls, obj.get_config())
