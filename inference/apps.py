from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        from inference import backtests
        from mlops import hooks

        # The registry admin's "Backtest on logged traffic" (mlops never imports inference).
        hooks.backtest_start.provide(backtests.backtest_start)
