from django.urls import include, path

from inference import backtest_views, views

urlpatterns = [
    path("v1/infer", views.InferView.as_view(), name="infer"),
    path("v1/infer/batch", views.InferBatchView.as_view(), name="infer-batch"),
    path("v1/infer/<str:prediction_id>", views.PredictionDetailView.as_view(), name="prediction-detail"),
    path("v1/models", views.ModelsView.as_view(), name="models"),
    path("v1/models/<uuid:model_version_id>/health", views.ModelHealthView.as_view(), name="model-health"),
    path("v1/backtests", backtest_views.BacktestCreateView.as_view(), name="backtests"),
    path("v1/backtests/<uuid:backtest_id>", backtest_views.BacktestDetailView.as_view(), name="backtest-detail"),
    path("healthz", views.HealthView.as_view(), name="healthz"),
    path("readyz", views.ReadyView.as_view(), name="readyz"),
    path("", include("django_prometheus.urls")),  # /metrics
]
