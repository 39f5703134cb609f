from django.contrib import admin
from django.urls import include, path

from mlops.api import openapi

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("inference.streams.urls")),  # /live/<product>/: the staff live page (streams)
    path("api/schema/", openapi.schema_view(), name="api-schema"),
    path("api/docs/", openapi.docs_view("api-schema"), name="api-docs"),
    path("", include("inference.urls")),
    path("", include("audit.urls")),
    path("", include("mlops.urls_api")),
]

# JSON error bodies under /v1/ (Django's own pages elsewhere): see mlops.api.errors.
handler404 = "mlops.api.errors.handler404"
handler500 = "mlops.api.errors.handler500"
