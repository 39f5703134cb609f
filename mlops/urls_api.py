"""Routes of the rollout and registry APIs (included from ``mlops.urls``; ``/v1/models`` itself is
routed with the serving path, `inference.urls`)."""

from django.urls import path

from mlops import registry_views, views

urlpatterns = [
    path("v1/canary", views.CanarySetView.as_view(), name="canary-set"),
    path("v1/canary/<slug:product>", views.CanaryDetailView.as_view(), name="canary-detail"),
    path("v1/canary/<slug:product>/stop", views.CanaryStopView.as_view(), name="canary-stop"),
    path("v1/canary/<slug:product>/step", views.CanaryStepView.as_view(), name="canary-step"),
    path("v1/canary/<slug:product>/promote", views.CanaryPromoteView.as_view(), name="canary-promote"),
    path("v1/shadow/<slug:product>", views.ShadowDetailView.as_view(), name="shadow-detail"),
    path("v1/shadow/<slug:product>/enable", views.ShadowEnableView.as_view(), name="shadow-enable"),
    path("v1/shadow/<slug:product>/disable", views.ShadowDisableView.as_view(), name="shadow-disable"),
    path("v1/shadow/<slug:product>/override", views.ShadowOverrideView.as_view(), name="shadow-override"),
    path("v1/rollbacks", views.RollbackListView.as_view(), name="rollbacks"),
    path("v1/models/<uuid:model_version_id>", registry_views.ModelVersionDetailView.as_view(), name="model-detail"),
    path("v1/models/<uuid:model_version_id>/promote", registry_views.ModelVersionPromoteView.as_view(), name="model-promote"),
    path("v1/models/<slug:product>/rollback", registry_views.ProductRollbackView.as_view(), name="model-rollback"),
]
