"""model.summary(): a table of layers, output shapes and parameter counts, then the compile
report when the model has been compiled."""

from __future__ import annotations

import io
import math

import numpy as np
from rich.console import Console
from rich.table import Table


def model_summary(model) -> str:
    table = Table(title=f'Model: "{model.name}"', title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    built = model.built
    trainable = non_trainable = 0
    for index, layer in enumerate(model.layers):
        shape, count = "?", 0
        if built:
            shape = str(layer.output.shape)
            count = sum(math.prod(v.shape) for v in layer.trainable_weights)
            frozen = sum(math.prod(v.shape) for v in layer.non_trainable_weights)
            trainable += count
            non_trainable += frozen
            count += frozen
        table.add_row(f"{layer.name} ({type(layer).__name__})", shape, f"{count:,}")
    buffer = io.StringIO()
    console = Console(file=buffer, width=88, force_terminal=False, color_system=None)
    console.print(table)
    lines = [buffer.getvalue().rstrip()]
    if built:
        lines.append(f" Total params: {trainable + non_trainable:,}")
        lines.append(f" Trainable params: {trainable:,}")
        lines.append(f" Non-trainable params: {non_trainable:,}")
    else:
        lines.append(" The model is not built yet: parameter counts appear once the input "
                     "shape is known.")
    report = model.compile_report
    if report is not None and (report.programs or report.flops_per_step is not None):
        lines.append(str(model.compile_report))
    return "\n".join(lines)
