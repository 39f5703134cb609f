from django.urls import path

from audit import views
from audit.drift import views as drift_views

urlpatterns = [
    path("v1/outcomes", views.OutcomeCreateView.as_view(), name="outcomes"),
    path("v1/audit/summary", views.AuditSummaryView.as_view(), name="audit-summary"),
    path("v1/audit/recent", views.AuditRecentView.as_view(), name="audit-recent"),
    path("v1/audit/compare", views.AuditCompareView.as_view(), name="audit-compare"),
    path("v1/drift/<slug:product>", drift_views.ProductDriftView.as_view(), name="drift"),
]
