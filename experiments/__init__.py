"""Hydra entry points. Importing this package registers the config resolvers."""

from experiments import resolvers as _resolvers  # noqa: F401
