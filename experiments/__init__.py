"""Hydra entry points. Importing this package registers the config resolvers and sets the process's memory policy
(`experiments.process_memory`), before any `experiments` module imports torch."""

from experiments import process_memory as _process_memory

_process_memory.configure()

from experiments import resolvers as _resolvers  # noqa: E402,F401
