"""jq runtime expressions: compiled-program cache, ``${ }`` handling, runtime variables.

Public surface::

    evaluate(expression, data, variables)      -> value   (``${ }`` optional)
    evaluate_value(value, data, variables)     -> value   (strict mode: only ``${ }`` strings)
    evaluate_condition(expression, data, variables) -> bool
    is_expression(value)                       -> bool
    expand_uri_template(template, data)        -> str

Failures raise the DSL's expression error (``WorkflowError``, status 400); the caller
sets its ``instance`` to the task reference.
"""

from flowkeeper.expressions.jq_programs import (
    Lazy,
    evaluate,
    evaluate_condition,
    evaluate_value,
    expand_uri_template,
    is_expression,
    strip_expression,
)

__all__ = [
    "Lazy",
    "evaluate",
    "evaluate_condition",
    "evaluate_value",
    "expand_uri_template",
    "is_expression",
    "strip_expression",
]
