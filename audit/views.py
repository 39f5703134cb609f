"""The audit API: outcomes in, summaries and recent rows out. Every view derives from BaseAPIView.

The prediction log has no write endpoint here: rows come only from the log writer, and
these views only read them (``GET``; anything else answers 405).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from audit import selectors, services
from audit.serializers import (
    MAX_OUTCOMES_PER_REQUEST,
    CompareQuerySerializer,
    CompareSerializer,
    OutcomeInputSerializer,
    PredictionLogSerializer,
    RecentQuerySerializer,
    SummaryQuerySerializer,
)
from mlops.api import inputs
from mlops.api.base import BaseAPIView
from mlops.api.errors import error_body
from mlops.api.openapi import error_responses
from mlops.choices import ApiCapability


def _query(serializer_class, request) -> dict:
    return inputs.parse_query(serializer_class, request.query_params)


class OutcomeCreateView(BaseAPIView):
    """``POST /v1/outcomes``: one outcome object, or a list of up to 10,000."""

    api_permission = ApiCapability.POST_OUTCOMES

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="OutcomesInput",
            serializers=[OutcomeInputSerializer, OutcomeInputSerializer(many=True, max_length=MAX_OUTCOMES_PER_REQUEST)],
            resource_type_field_name=None,
            many=False,
        ),
        responses={201: inline_serializer("OutcomesRecorded", {"recorded": serializers.IntegerField()})},
        description="One outcome object, or a list of them; a repeated (product, event_id, source) replaces the earlier label.",
    )
    def post(self, request):
        many = isinstance(request.data, list)
        if many and len(request.data) > MAX_OUTCOMES_PER_REQUEST:
            return Response(
                error_body("too_many", f"At most {MAX_OUTCOMES_PER_REQUEST} outcomes per request.", {"body": ["too many items"]}),
                status=status.HTTP_400_BAD_REQUEST,
            )
        validated = inputs.parse(OutcomeInputSerializer, request.data, many=many)
        items = validated if many else [validated]
        recorded = services.outcomes_record(items=items)
        return Response({"recorded": recorded}, status=status.HTTP_201_CREATED)


class AuditSummaryView(BaseAPIView):
    """``GET /v1/audit/summary?product=&since=``."""

    api_permission = ApiCapability.READ_AUDIT

    @extend_schema(parameters=[SummaryQuerySerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        query = _query(SummaryQuerySerializer, request)
        summary = selectors.prediction_log_summary(product=query.get("product"), since=query["since"])
        return Response(summary)


class RecentPagination(CursorPagination):
    ordering = ("-created_at", "-prediction_id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


class AuditRecentView(BaseAPIView):
    """``GET /v1/audit/recent?product=&limit=`` (cursor-paginated, newest first)."""

    api_permission = ApiCapability.READ_AUDIT

    pagination_class = RecentPagination  # read by drf-spectacular too: the answer is documented as its page

    @extend_schema(
        parameters=[RecentQuerySerializer],
        responses={200: PredictionLogSerializer(many=True), **error_responses(404)},  # 404: a cursor this endpoint never gave
    )
    def get(self, request):
        query = _query(RecentQuerySerializer, request)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.prediction_log_recent(product=query.get("product")), request, view=self)
        return paginator.get_paginated_response(PredictionLogSerializer(page, many=True).data)


class AuditCompareView(BaseAPIView):
    """``GET /v1/audit/compare?product=&window=``: canary against production, with the evidence on every
    difference and per segment (`audit.selectors.comparison`)."""

    api_permission = ApiCapability.READ_AUDIT

    @extend_schema(parameters=[CompareQuerySerializer], responses={200: CompareSerializer})
    def get(self, request):
        query = _query(CompareQuerySerializer, request)
        comparison = selectors.canary_comparison(product=query["product"], window=query["window"])
        return Response(CompareSerializer(comparison).data)
