"""Short number formats for the spaces' describe(hp) labels."""

import numpy as np


def scientific(value: float, digits: int = 2) -> str:
    """1.4e-3 for 0.0014025, 1e-3 for 0.001: rates read and line up better this way."""
    return np.format_float_scientific(value, precision=digits - 1, trim="-", exp_digits=1)


def fraction(value: float) -> str:
    """.25 for 0.25, .15 for 0.15000000000000002 (KerasTuner's float steps)."""
    return f"{value:.2g}".removeprefix("0")


def number(value: float) -> str:
    """0.25 for 0.25, 0.15 for 0.15000000000000002, 3 for 3.0."""
    return f"{value:.3g}"
