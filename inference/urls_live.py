from django.urls import path

from inference import live

urlpatterns = [
    path("live/<slug:product>/", live.live_page, name="live-product"),
]
