"""The serving configuration generation: what request threads read, and how often the cache is asked."""

import pytest

from mlops.background import config_generation
from mlops.models import ConfigGeneration


def test_recent_answers_from_the_last_read_within_its_age_and_reads_again_after():
    first = config_generation.current()  # as the serving refresher does, twice a second
    config_generation.bump()  # another process changes the configuration
    assert config_generation.recent(60.0) == first  # a request thread: no cache round trip
    assert config_generation.recent(0.0) == first + 1  # too old for this caller: read again
    assert config_generation.recent(60.0) == first + 1  # and that read is the one remembered


@pytest.mark.django_db(transaction=True)
def test_without_a_shared_cache_the_generation_is_one_database_row_bumped_after_commit(settings):
    from django.db import transaction

    settings.CONFIG_GENERATION_STORE = "database"
    before = config_generation.current()
    with transaction.atomic():
        config_generation.bump_on_commit()
        assert config_generation.current() == before  # not before the change is visible
    assert config_generation.current() == before + 1
    config_generation.bump()
    assert ConfigGeneration.objects.get().value == before + 2
