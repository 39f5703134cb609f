"""Backtest API: ``POST /v1/backtests`` queues a backtest of a model version on logged production
traffic and answers 202 at once (it runs on a background thread, `inference.backtests`);
``GET /v1/backtests/{id}`` answers the record, with its report once done.

An unknown model version answers 404 naming ``model_version_id``; a product without production
traffic in the window gives a done backtest whose report says 0 rows scored.
"""

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from audit.backtests import backtest_get
from audit.models import BacktestStatus
from inference.backtests import backtest_start
from mlops.api.base import BaseAPIView
from mlops.api.changes import Conflict, caller_of
from mlops.api.inputs import parse
from mlops.api.openapi import error_responses, links
from mlops.choices import ApiCapability
from mlops.services import LifecycleError
from mlops.views import ModelVersionIdField


class BacktestInput(serializers.Serializer):
    model_version_id = ModelVersionIdField(help_text="The version to score (usually a candidate).")
    last = serializers.IntegerField(
        min_value=1, max_value=settings.BACKTEST_MAX_ROWS, required=False,
        help_text="At most this many of the newest production rows of the model's product (default BACKTEST_DEFAULT_ROWS "
        "when `since` is absent too).",
    )  # fmt: skip
    since = serializers.DateTimeField(required=False, help_text="Only rows logged at or after this time (ISO 8601).")


class BacktestOutput(serializers.Serializer):
    id = serializers.UUIDField()
    model_version_id = serializers.UUIDField()
    product = serializers.CharField()
    model = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=BacktestStatus.choices)
    last = serializers.IntegerField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    rows_total = serializers.IntegerField(help_text="Rows to replay, known once running.")
    rows_done = serializers.IntegerField()
    error = serializers.CharField(help_text="Why a failed backtest failed.")
    created_by = serializers.CharField(source="created_by.get_username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    report = serializers.JSONField(
        allow_null=True,
        help_text="When done: rows scored and skipped (with why), decision agreement and confusion, score-difference "
        "classes, false- and true-positive rates of both on events with outcomes (with intervals), per segment "
        "(EVIDENCE_SEGMENTS: rows, agreement, both sides' outcome rates, their difference with its interval, Fisher p and "
        "a verdict; or why a segment is not available), latency, verdict.",
    )

    def get_model(self, backtest) -> str:
        return f"{backtest.model_version.name}@{backtest.model_version.version}"


class BacktestCreateView(BaseAPIView):
    """``POST /v1/backtests``: score a model version on its product's logged production traffic, in the background."""

    api_permission = ApiCapability.MANAGE_MODELS

    @extend_schema(
        request=BacktestInput,
        responses={202: BacktestOutput, **error_responses(404, 409)},
        extensions=links(202, {"GetBacktest": ("GET", "/v1/backtests/{backtest_id}", {"backtest_id": "$response.body#/id"})}),
    )
    def post(self, request):
        data = parse(BacktestInput, request.data)
        user, _ = caller_of(request)
        try:
            backtest = backtest_start(model_version_id=data["model_version_id"], last=data.get("last"), since=data.get("since"), user=user)
        except LifecycleError as exc:
            raise Conflict(str(exc)) from None
        return Response(
            BacktestOutput(backtest_get(backtest_id=backtest.pk)).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/v1/backtests/{backtest.pk}"},
        )


class BacktestDetailView(BaseAPIView):
    """``GET /v1/backtests/{id}``: the backtest's status and progress, and its report once done."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(responses=BacktestOutput)
    def get(self, request, backtest_id):
        backtest = backtest_get(backtest_id=backtest_id)
        if backtest is None:
            raise Http404(f"no backtest {backtest_id}")
        return Response(BacktestOutput(backtest).data)
