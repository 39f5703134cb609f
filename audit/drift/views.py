"""``GET /v1/drift/{product}``: the current PSI of each feature and of the score, the window and the baseline's source.

Capability ``read_models``: drift is a statement about a model in service, like its rollout
state, and the answer holds aggregates only, never a logged input (``read_predictions`` is for
reading predictions themselves, which inference clients have).
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from audit.drift.selectors import product_drift
from audit.drift.serializers import ProductDriftOutput
from mlops.api.base import BaseAPIView
from mlops.choices import ApiCapability


class ProductDriftView(BaseAPIView):
    """The product's watched versions (production, then an active canary) and the drift of their inputs."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(responses=ProductDriftOutput)
    def get(self, request, product: str):
        drift = product_drift(product=product)
        if drift is None:
            raise Http404(f"unknown product {product!r}")
        return Response(ProductDriftOutput(drift).data)
