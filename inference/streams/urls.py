from django.urls import path

from inference.streams import live_page as live

urlpatterns = [
    path("live/<slug:product>/", live.live_page, name="live-product"),
]
