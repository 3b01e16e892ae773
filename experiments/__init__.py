"""Hydra entry points. Importing this package sets the process's memory policy (`uhrtex.common.memory`, before any
`experiments` module imports torch) and registers the config resolvers."""

from uhrtex.common import memory as _memory

_memory.configure_process()

from experiments import resolvers as _resolvers  # noqa: E402,F401
