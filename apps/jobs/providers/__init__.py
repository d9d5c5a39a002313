"""The generators image2model can use, by id."""

from __future__ import annotations

from apps.jobs.providers.base import Generator
from apps.jobs.providers.fal import GENERATORS as FAL_GENERATORS
from apps.jobs.providers.relief import ReliefGenerator

_GENERATORS: dict[str, Generator] = {
    generator.id: generator for generator in [*FAL_GENERATORS, ReliefGenerator()]
}


def generator_get(generator_id: str) -> Generator | None:
    return _GENERATORS.get(generator_id)


def generators_all() -> list[Generator]:
    return list(_GENERATORS.values())


def generator_default_id() -> str:
    """Tripo3D when a FAL key makes it available, else the offline Relief generator."""
    for generator in _GENERATORS.values():
        if generator.availability()[0]:
            return generator.id
    return "relief"
