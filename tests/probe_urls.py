"""The project's URLs plus one probe endpoint per capability (and a public one, and one that fails).

The probes make the security tests independent of which real endpoints exist yet; the real
ones are included too, so walking this URLconf covers every endpoint.
"""

from django.http import HttpResponse
from django.urls import path
from rest_framework.response import Response

from mlops import urls as project_urls
from mlops.api.base import BaseAPIView, principal_of
from mlops.choices import ApiCapability


class Probe(BaseAPIView):
    def get(self, request):
        principal = principal_of(request)
        return Response({"ok": True, "kind": principal.kind if principal else None, "name": principal.name if principal else None})

    def post(self, request):
        data = request.data
        return Response({"ok": True, "keys": sorted(data)[:5] if isinstance(data, dict) else None})


def probe(capability):
    return type(f"Probe_{capability}", (Probe,), {"api_permission": capability}).as_view()


class PublicProbe(Probe):
    api_permission = None


class UndeclaredProbe(Probe):
    """No api_permission: must answer nobody."""


class FailingProbe(BaseAPIView):
    api_permission = None

    def get(self, request):
        raise RuntimeError("secret_internal_name_in_traceback")


def failing_plain_view(request):
    raise RuntimeError("secret_internal_name_in_traceback")


def plain_ok_view(request):
    return HttpResponse("ok")


urlpatterns = [
    *[path(f"v1/_probe/{capability}", probe(capability)) for capability in ApiCapability.values],
    path("v1/_probe/public", PublicProbe.as_view()),
    path("v1/_probe/undeclared", UndeclaredProbe.as_view()),
    path("v1/_probe/fail", FailingProbe.as_view()),
    path("v1/_plain/fail", failing_plain_view),
    path("_plain/fail", failing_plain_view),
    *project_urls.urlpatterns,
]

handler404 = "mlops.api.errors.handler404"
handler500 = "mlops.api.errors.handler500"
