from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("inference.urls")),
    path("", include("audit.urls")),
    path("", include("mlops.urls_api")),
]

# JSON error bodies under /v1/ (Django's own pages elsewhere): see mlops.api.
handler404 = "mlops.api.handler404"
handler500 = "mlops.api.handler500"
