"""Model instances from rows of hand-written SQL, converted exactly as the ORM converts a SELECT.

The ORM spends most of a small query's time building the query and its SQL (hundreds of
microseconds), far more than PostgreSQL takes to answer it. The few reads and writes that run
on every job step or every status request write their SQL once and use these helpers to turn
the rows back into model instances (decision 0018).
"""

from __future__ import annotations

from typing import Any

from django.db import models

_converters: dict[tuple[type, str], list] = {}
_columns: dict[tuple[type, str, str], str] = {}


def columns(model: type[models.Model], alias: str, connection) -> str:
    """``alias.column, …`` for every concrete field of ``model``, in the model's field order."""
    key = (model, alias, connection.vendor)
    found = _columns.get(key)
    if found is None:
        qn = connection.ops.quote_name
        fields = model._meta.concrete_fields
        found = _columns[key] = ", ".join(f"{qn(alias)}.{qn(field.column)}" for field in fields)
    return found


def width(model: type[models.Model]) -> int:
    """How many columns :func:`columns` selects for ``model``."""
    return len(model._meta.concrete_fields)


def instance(model: type[models.Model], row, connection, offset: int = 0) -> Any:
    """The instance of ``model`` whose columns start at ``row[offset]``, as a read gives it."""
    key = (model, connection.vendor)
    converters = _converters.get(key)
    if converters is None:
        converters = []
        for field in model._meta.concrete_fields:
            column = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            converters.append((column, found))
        _converters[key] = converters
    values = []
    for index, (column, found) in enumerate(converters, start=offset):
        value = row[index]
        for converter in found:
            value = converter(value, column, connection)
        values.append(value)
    return model.from_db(connection.alias, None, values)
