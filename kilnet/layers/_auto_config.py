"""Keras 3's automatic configuration: a layer or model class of yours that takes constructor
arguments but defines no get_config() is configured by the arguments it was made with, when
they are plain data (str, int, float, bool, None, and lists, tuples and dicts of them).

The arguments are recorded when the object is made (Layer.__new__ calls
`recorded_arguments`); get_config() then reads them back with `automatic_config`.
"""

from __future__ import annotations

import inspect

# The values Keras's automatic configuration accepts: what JSON holds as it is
PLAIN_TYPES = (str, int, float, bool, type(None))


class RecordedArguments:
    """The constructor arguments of one object as keyword arguments (defaults filled in,
    **kwargs spread out, `self` and `name` left out), or why they cannot make a config.

    `arguments` is a dict, or None where `problem` says why no config can hold them.

    Example:
        >>> RecordedArguments({"units": 3}).arguments
        {'units': 3}
        >>> class Stack:
        ...     def __init__(self, *layers): pass
        >>> recorded_arguments(Stack, (1, 2), {}).problem
        'it was given variadic positional arguments (*layers), which a config cannot hold'
    """

    def __init__(self, arguments: dict | None, problem: str | None = None):
        self.arguments = arguments
        self.problem = problem


def recorded_arguments(cls, args: tuple, kwargs: dict) -> RecordedArguments:
    """The arguments `cls(*args, **kwargs)` is being called with, as a config would hold them.

    Example:
        >>> class Scale:
        ...     def __init__(self, factor, offset=0.0, **kwargs): pass
        >>> recorded_arguments(Scale, (2.0,), {"name": "s", "trainable": False}).arguments
        {'factor': 2.0, 'offset': 0.0, 'trainable': False}
    """
    try:
        signature = inspect.signature(cls.__init__)
        bound = signature.bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return RecordedArguments(None, "its constructor was called with arguments that do "
                                       "not match its signature")
    parameters = list(signature.parameters.values())[1:]
    if any(p.kind is p.POSITIONAL_ONLY for p in parameters):
        return RecordedArguments(None, "its __init__ takes positional-only arguments, which a "
                                       "config (keyword arguments) cannot give back")
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(signature.parameters)))   # self
    for parameter in parameters:
        if parameter.kind is parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(parameter.name, {}))
        elif parameter.kind is parameter.VAR_POSITIONAL and arguments.pop(parameter.name, ()):
            return RecordedArguments(None, f"it was given variadic positional arguments "
                                           f"(*{parameter.name}), which a config cannot hold")
    arguments.pop("name", None)   # the config's own "name" key holds it
    for key, value in arguments.items():
        unplain = _first_unplain_value(value)
        if unplain is not None:
            return RecordedArguments(None, f"its argument {key}={unplain!r:.80} is not plain "
                                           "data (str, int, float, bool, None, or lists, "
                                           "tuples and dicts of them)")
    return RecordedArguments(arguments)


def _first_unplain_value(value):
    if isinstance(value, PLAIN_TYPES):
        return None
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return value
    for item in items:
        unplain = _first_unplain_value(item)
        if unplain is not None:
            return unplain
    return None


def automatic_config(obj, name: str) -> dict:
    """Keras's automatic get_config() for `obj`: its name (left out where its __init__ could
    not take it back: no `name` and no **kwargs) and the arguments it was made with.
    NotImplementedError, naming the argument, where they are not plain data.

    Example:
        >>> import kilnet
        >>> class Scale(kilnet.layers.Layer):
        ...     def __init__(self, factor, offset=0.0, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.factor, self.offset = factor, offset
        ...     def call(self, x):
        ...         return x * self.factor + self.offset
        >>> config = Scale(2.0, offset=1.0, name="scale").get_config()
        >>> {key: config[key] for key in ("name", "factor", "offset")}
        {'name': 'scale', 'factor': 2.0, 'offset': 1.0}
    """
    recorded = obj.__dict__.get("_recorded_arguments")
    if recorded is None or recorded.arguments is None:
        why = recorded.problem if recorded is not None else "its arguments were not recorded"
        raise NotImplementedError(
            f"{type(obj).__name__} defines no get_config(), and its automatic config (the "
            f"arguments it was made with, as in Keras) cannot be made: {why}. Define "
            "get_config() to return its arguments as plain data, starting from "
            "super().get_config() (and from_config() where it needs to rebuild objects).")
    parameters = inspect.signature(type(obj).__init__).parameters
    takes_name = "name" in parameters or any(
        p.kind is p.VAR_KEYWORD for p in parameters.values())
    config = {"name": name} if takes_name else {}
    config.update(recorded.arguments)
    return config


def configures_automatically(obj, base_class) -> bool:
    """Whether `obj`'s get_config() is Keras's automatic config: its class keeps
    `base_class`'s get_config(), has an __init__ of its own, and was made with arguments
    (its own, or ones its `**kwargs` pass on to a parent), or with ones no config can hold.
    A class of yours made with no arguments keeps the base config.

    Example:
        >>> import kilnet
        >>> class Parent(kilnet.layers.Layer):
        ...     def __init__(self, units, **kwargs):
        ...         super().__init__(**kwargs)
        >>> class Child(Parent):
        ...     def __init__(self, **kwargs):
        ...         super().__init__(**kwargs)
        >>> configures_automatically(Child(units=3), kilnet.layers.Layer)
        True
        >>> configures_automatically(kilnet.layers.Dense(2), kilnet.layers.Layer)
        False
    """
    cls = type(obj)
    if cls.get_config is not base_class.get_config or cls.__init__ is base_class.__init__:
        return False
    recorded = obj.__dict__.get("_recorded_arguments")
    return recorded is not None and (recorded.problem is not None or bool(recorded.arguments))


def with_constructor_arguments(obj, base_config: dict) -> dict:
    """Keras's automatic config of `obj` from its base config ({"name", "trainable",
    "dtype", ...}): the name (where the constructor takes it back), the arguments it was
    made with, then the base keys, whose values win.

    Example:
        >>> import kilnet
        >>> class Scale(kilnet.layers.Layer):
        ...     def __init__(self, factor, **kwargs):
        ...         super().__init__(**kwargs)
        >>> list(with_constructor_arguments(Scale(2.0), {"name": "s", "trainable": True}))
        ['name', 'factor', 'trainable']
    """
    automatic = automatic_config(obj, base_config.get("name"))
    base = {key: value for key, value in base_config.items()
            if key != "name" or key in automatic}
    return {**automatic, **base}
