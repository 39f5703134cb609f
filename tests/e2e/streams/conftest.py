"""The stream tests' fixtures (tests/inference/streams/conftest.py) for the stream tests against real servers."""

from tests.inference.streams.conftest import (  # noqa: F401
    api_key,
    close_pooled_connections,
    dual,
    features,
    local_store,
    model_files,
    register,
    stream_state,
)
