"""The registry of your classes and functions that model files may name ("package>Name").

Why a module of its own: `kilnet.saving.register_serializable` fills it, and layers read it
(a Lambda layer saves its function by registered name), while saving itself builds on the
layers; both import this small table instead of each other.
"""

from __future__ import annotations

_BY_NAME: dict = {}   # "package>Name" -> class or function
_NAMES: dict = {}     # class or function -> "package>Name"


def register(name: str, obj) -> None:
    """Record `obj` under `name` (a later registration of the name replaces it).

    Example:
        >>> register("Doc>noop", print)
        >>> lookup("Doc>noop") is print, name_of(print)
        (True, 'Doc>noop')
    """
    _BY_NAME[name] = obj
    _NAMES[obj] = name


def name_of(obj):
    """The registered name of a class or function, or None."""
    try:
        return _NAMES.get(obj)
    except TypeError:   # an unhashable object is never registered
        return None


def lookup(name: str):
    """The class or function registered under `name`, or None."""
    return _BY_NAME.get(name)


def registered() -> dict:
    """A copy of the registry: {"package>Name": object}."""
    return dict(_BY_NAME)


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
