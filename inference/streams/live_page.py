"""The live prediction page: ``/live/<product>/``, admin-styled, staff only.

The page itself is static; it opens an EventSource on ``/stream/live/<product>/`` (served by
the `stream` process, `inference.streams.LiveConsumer`) and renders each prediction as it comes.
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache


@never_cache
@staff_member_required
def live_page(request, product: str):
    context = {
        **admin.site.each_context(request),
        "title": f"Live predictions: {product}",
        "product": product,
        "stream_url": f"/stream/live/{product}/",
        "max_events_per_second": settings.LIVE_MAX_EVENTS_PER_SECOND,
    }
    return TemplateResponse(request, "live/product.html", context)
