"""Model instances from rows of hand-written SQL, converted exactly as the ORM converts a SELECT.

The ORM spends most of a small query's time building the query and its SQL (hundreds of
microseconds), far more than PostgreSQL takes to answer it. The few reads and writes that run
on every job step or every status request write their SQL once and use these helpers to turn
the rows back into model instances (decision 0018).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.base import DEFERRED

_converters: dict[tuple[type, str, frozenset], list] = {}
_columns: dict[tuple[type, str, str, frozenset], str] = {}


def _fields(model: type[models.Model], defer: frozenset) -> list:
    return [field for field in model._meta.concrete_fields if field.attname not in defer]


def columns(model: type[models.Model], alias: str, connection, defer: frozenset = frozenset()):
    """``alias.column, …`` for the concrete fields of ``model`` (in the model's order) except
    those named in ``defer`` (left out as ``QuerySet.defer`` leaves them out)."""
    key = (model, alias, connection.vendor, defer)
    found = _columns.get(key)
    if found is None:
        qn = connection.ops.quote_name
        fields = _fields(model, defer)
        found = _columns[key] = ", ".join(f"{qn(alias)}.{qn(field.column)}" for field in fields)
    return found


def width(model: type[models.Model], defer: frozenset = frozenset()) -> int:
    """How many columns :func:`columns` selects for ``model``."""
    return len(_fields(model, defer))


def instance(
    model: type[models.Model], row, connection, offset: int = 0, defer: frozenset = frozenset()
) -> Any:
    """The instance of ``model`` whose columns start at ``row[offset]``, as a read gives it
    (fields in ``defer`` are deferred: read from the database if they are ever used)."""
    key = (model, connection.vendor, defer)
    converters = _converters.get(key)
    if converters is None:
        converters = []
        for field in model._meta.concrete_fields:
            if field.attname in defer:
                converters.append(None)
                continue
            column = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            converters.append((column, found))
        _converters[key] = converters
    values = []
    index = offset
    for converter in converters:
        if converter is None:
            values.append(DEFERRED)
            continue
        column, found = converter
        value = row[index]
        index += 1
        for convert in found:
            value = convert(value, column, connection)
        values.append(value)
    return model.from_db(connection.alias, None, values)
