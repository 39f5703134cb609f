"""The audit API: outcomes in, summaries and recent rows out. Every view derives from BaseAPIView.

The prediction log has no write endpoint here: rows come only from the log writer, and
these views only read them (``GET``; anything else answers 405).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from audit import selectors, services
from audit.serializers import (
    MAX_OUTCOMES_PER_REQUEST,
    CompareQuerySerializer,
    OutcomeInputSerializer,
    PredictionLogSerializer,
    RecentQuerySerializer,
    SummaryQuerySerializer,
)
from mlops.api.base import BaseAPIView
from mlops.api.errors import error_body
from mlops.choices import ApiCapability


def _query(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class OutcomeCreateView(BaseAPIView):
    """``POST /v1/outcomes``: one outcome object, or a list of up to 10,000."""

    api_permission = ApiCapability.POST_OUTCOMES

    @extend_schema(
        request=OutcomeInputSerializer,
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
        serializer = OutcomeInputSerializer(data=request.data, many=many)
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data if many else [serializer.validated_data]
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

    @extend_schema(parameters=[RecentQuerySerializer], responses=PredictionLogSerializer(many=True))
    def get(self, request):
        query = _query(RecentQuerySerializer, request)
        paginator = RecentPagination()
        page = paginator.paginate_queryset(selectors.prediction_log_recent(product=query.get("product")), request, view=self)
        return paginator.get_paginated_response(PredictionLogSerializer(page, many=True).data)


class AuditCompareView(BaseAPIView):
    """``GET /v1/audit/compare?product=&window=``: canary against production."""

    api_permission = ApiCapability.READ_AUDIT

    @extend_schema(parameters=[CompareQuerySerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        query = _query(CompareQuerySerializer, request)
        return Response(selectors.canary_comparison(product=query["product"], window=query["window"]))
