"""``manage.py audit_replay [FILE ...]``: put spilled prediction log records into the database.

Without FILE, every replayable file of ``AUDIT_SPILL_DIR`` (closed ones, and those left by dead
processes). Replays are idempotent: records already in the log are skipped. A replayed file
is deleted; one that could not be finished is left for the next attempt.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import spill
from audit.logstore import store_for
from audit.writer import replay_file


class Command(BaseCommand):
    help = "Replay prediction log spill files into the database (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", type=Path, metavar="FILE")

    def handle(self, *args, files: list[Path], **options):
        spill_dir = Path(settings.AUDIT_SPILL_DIR)
        for path in files:
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
            owner = spill._owner(path.name)
            if path.name.endswith(".part") and owner and owner[0] == spill.HOST and spill._pid_alive(owner[1]):
                raise CommandError(f"{path}: process {owner[1]} is still writing it; it replays it itself when the database is back")
        paths = files or spill.replayable(spill_dir)
        if not paths:
            self.stdout.write(f"nothing to replay in {spill_dir}")
            return
        store = store_for()
        failed = 0
        try:
            for path in paths:
                result = replay_file(path, store=store, spill_dir=spill_dir)
                if result.error:
                    failed += 1
                    self.stderr.write(f"{path}: not replayed ({result.error})")
                    continue
                extra = f", {result.bad_lines} unreadable and {result.rejected} refused lines kept in {spill_dir / 'rejected'}"
                self.stdout.write(
                    f"{path}: {result.records} records, {result.inserted} new" + (extra if result.bad_lines or result.rejected else "")
                )
        finally:
            store.close()
        if failed:
            raise CommandError(f"{failed} of {len(paths)} files could not be replayed")
