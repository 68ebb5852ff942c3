"""The layers a layer holds in its config (a wrapper's `layer`, an RNN's `cell`, a stacked
cell's `cells`, a Pipeline's `layers`), written as Keras writes them.

Why a module of its own: Keras's configs nest each held layer's full entry, {"module",
"class_name", "config", "registered_name"} (`serialize_keras_object`), so a printed config, a
JSON architecture and a `.keras` file hold the same data in kilnet and in Keras. kilnet's
files written before nest the shorter {"class_name", "config"}; both are read back through
the model-file allowlist (kilnet.models._config), which creates only kilnet's layers and
registered classes.
"""

from __future__ import annotations


def keras_entry(layer) -> dict:
    """A held layer's entry as Keras's get_config nests it, without a build_config: its
    holder builds it (Keras nests the input shape a built layer was built for), so the config
    is the same before and after building.

    Example:
        >>> import kilnet
        >>> entry = keras_entry(kilnet.layers.Dense(2, name="inner"))
        >>> entry["module"], entry["class_name"], entry["registered_name"]
        ('keras.layers', 'Dense', None)
    """
    from kilnet import serialization

    entry = serialization.serialize_keras_object(layer)
    if not layer.keeps_own_build_config:   # a layer of yours may need its own to load
        entry.pop("build_config", None)
    return entry


def as_spec(entry) -> dict:
    """kilnet's {"class_name", "config"} (and "build_config") of a held layer's entry in
    either form: a class of yours is named by its registered name, as kilnet's files name it.

    Example:
        >>> as_spec({"module": "keras.layers", "class_name": "Dense", "config": {"units": 2},
        ...          "registered_name": None})
        {'class_name': 'Dense', 'config': {'units': 2}}
    """
    if not isinstance(entry, dict):
        return entry   # malformed: the allowlist's reader says why
    spec = {"class_name": entry.get("registered_name") or entry.get("class_name"),
            "config": entry.get("config")}
    if "build_config" in entry:
        spec["build_config"] = entry["build_config"]
    return spec


def rebuilt(entry):
    """The held layer an entry describes (either form), made through the model-file
    allowlist.

    Example:
        >>> import kilnet
        >>> rebuilt(keras_entry(kilnet.layers.Dense(2))).units
        2
    """
    from kilnet.models import _config

    return _config.deserialize(as_spec(entry))
