"""The serving tests' fixtures (tests/inference/conftest.py, its streams/conftest.py) for the stream tests on real servers."""

from tests.inference.conftest import local_store  # noqa: F401  a store under a short path
from tests.inference.streams.conftest import (  # noqa: F401
    api_key,
    close_pooled_connections,
    dual,
    features,
    model_files,
    register,
    stream_state,
)
