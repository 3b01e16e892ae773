"""Network building blocks."""

from uhrtex.networks.hash_encoding import HashGridConfig, HashGridEncoding  # noqa: F401
