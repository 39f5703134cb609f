"""The serving configuration generation: what request threads read, and how often the cache is asked."""

from mlops.background import config_generation


def test_recent_answers_from_the_last_read_within_its_age_and_reads_again_after():
    first = config_generation.current()  # as the serving refresher does, twice a second
    config_generation.bump()  # another process changes the configuration
    assert config_generation.recent(60.0) == first  # a request thread: no cache round trip
    assert config_generation.recent(0.0) == first + 1  # too old for this caller: read again
    assert config_generation.recent(60.0) == first + 1  # and that read is the one remembered
