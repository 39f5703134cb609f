"""The monotonic clock of the background layer's timers (configuration generation reads, table
reloads), in one place: a test lets time pass by replacing `monotonic` instead of sleeping."""

import time


def monotonic() -> float:
    return time.monotonic()
