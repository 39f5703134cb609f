from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from mlops.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(SimpleHistoryAdmin):
    list_display = ["__str__", "product", "status", "created_at"]
