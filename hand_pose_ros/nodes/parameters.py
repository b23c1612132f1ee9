"""Declared, described and validated ROS parameters for our nodes.

Each node lists its parameters once as ``ParameterSpec``s (the defaults live in config/*.yaml,
which the node is started with). ``declare_parameters`` declares them with a
``ParameterDescriptor`` (description and range, so ``ros2 param describe`` shows them) and
returns the validated values. A wrong type, a value out of range or not among the allowed
choices raises ``ParameterError`` naming the parameter, the value and what is allowed, so a
node with bad parameters fails at start with one clear line instead of misbehaving later.
"""

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.node import Node


class ParameterError(ValueError):
    """A node parameter has a value the node cannot work with."""


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: its default, its meaning (with units) and what values are allowed."""

    name: str
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[Any, ...] | None = None

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, description=self.description)
        if self.choices is not None:
            descriptor.additional_constraints = "one of: " + ", ".join(map(str, self.choices))
        if self.min_value is not None and self.max_value is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                descriptor.integer_range = [
                    IntegerRange(from_value=int(self.min_value), to_value=int(self.max_value))
                ]
            elif isinstance(self.default, float):
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=self.min_value, to_value=self.max_value)
                ]
        return descriptor

    def check(self, value: Any) -> Any:
        """Return ``value`` if allowed, else raise ParameterError saying what is allowed."""
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r} is not one of {list(self.choices)}"
            )
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_number and value != value:  # NaN
            raise ParameterError(f"parameter '{self.name}' is NaN")
        if is_number and self.min_value is not None and value < self.min_value:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r} is below its minimum {self.min_value}"
            )
        if is_number and self.max_value is not None and value > self.max_value:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r} is above its maximum {self.max_value}"
            )
        return value


def declare_parameters(node: Node, specs: list[ParameterSpec]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` and return {name: validated value}.

    Raises:
        ParameterError: a value (from a params file or an override) has the wrong type, is out
            of range or is not an allowed choice.
    """
    values = {}
    for spec in specs:
        try:
            parameter = node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except InvalidParameterTypeException as error:
            raise ParameterError(
                f"parameter '{spec.name}' has the wrong type: expected "
                f"{type(spec.default).__name__} like the default {spec.default!r} ({error})"
            ) from error
        except (InvalidParameterValueException, ParameterException) as error:
            raise ParameterError(f"parameter '{spec.name}': {error}") from error
        values[spec.name] = spec.check(parameter.value)
    return values
