import re

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from mlops.api import errors, openapi

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("inference.streams.urls")),  # /live/<product>/: the staff live page (streams)
    path("api/schema/", openapi.schema_view(), name="api-schema"),
    path("api/docs/", openapi.docs_view("api-schema"), name="api-docs"),
    path("", include("inference.urls")),
    path("", include("audit.urls")),
    path("", include("mlops.urls_api")),
]
# Last: whatever else is under an API prefix answers the JSON 404, in every mode (see errors.api_not_found).
# No `$`: the rest of the path, whatever it holds (a newline too, which `.` would not match), is refused alike.
urlpatterns += [re_path(rf"^{re.escape(prefix.strip('/'))}/", errors.api_not_found) for prefix in settings.API_PATH_PREFIXES]

# JSON error bodies under /v1/ (Django's own pages elsewhere): see mlops.api.errors.
handler404 = "mlops.api.errors.handler404"
handler500 = "mlops.api.errors.handler500"
