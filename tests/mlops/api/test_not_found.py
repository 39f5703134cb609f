"""A path under /v1/ that no endpoint matches answers the JSON error body, in every mode."""

import pytest
from django.test import Client


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_api_path_is_a_json_404_with_debug_on_or_off(settings, debug, method):
    settings.DEBUG = debug  # on, Django's technical 404 page would answer instead of handler404
    # A product that is no slug matches no route (the case schemathesis found).
    response = getattr(Client(), method)("/v1/shadow/%C2%96%C3%B4/disable")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": "No such endpoint."}}


def test_paths_outside_the_api_keep_django_pages(settings):
    settings.DEBUG = True
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and "text/html" in response["Content-Type"]
