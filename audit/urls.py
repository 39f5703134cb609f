from django.urls import path

from audit import views

urlpatterns = [
    path("v1/outcomes", views.OutcomeCreateView.as_view(), name="outcomes"),
    path("v1/audit/summary", views.AuditSummaryView.as_view(), name="audit-summary"),
    path("v1/audit/recent", views.AuditRecentView.as_view(), name="audit-recent"),
    path("v1/audit/compare", views.AuditCompareView.as_view(), name="audit-compare"),
]
