"""A path under /v1/ that no endpoint matches answers the JSON error body, in every mode."""

import pytest
from django.test import Client


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("method", ["get", "post", "delete"])
# A product that is no slug matches no route (the cases schemathesis found), a newline in it too.
@pytest.mark.parametrize("path", ["/v1/shadow/%C2%96%C3%B4/disable", "/v1/canary/%C3%9C%0A%3D/promote"])
def test_an_unknown_api_path_is_a_json_404_with_debug_on_or_off(settings, debug, method, path):
    settings.DEBUG = debug  # on, Django's technical 404 page would answer instead of handler404
    response = getattr(Client(), method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": "No such endpoint."}}


def test_paths_outside_the_api_keep_django_pages(settings):
    settings.DEBUG = True
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and "text/html" in response["Content-Type"]
