"""The API tests walk every endpoint, /v1/infer and the health probes among them, which start this
process's serving runtime and its background refresher; stopped after each test, it does not go
on reporting a serving worker into the tests that follow."""

import pytest


@pytest.fixture(autouse=True)
def stop_the_serving_runtime():
    yield
    from inference.runtime import runtime

    runtime.reset()
