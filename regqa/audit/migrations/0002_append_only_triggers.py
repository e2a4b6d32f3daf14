"""Refuse UPDATE and DELETE on audit events in the database itself, not only in the app."""

from django.db import migrations

SQLITE = [
    """CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
    """CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'integrity_constraint_violation';
       END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_auditevent
       FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()""",
]


def create_triggers(apps, schema_editor):
    from django.conf import settings

    if not settings.AUDIT_DB_TRIGGERS:
        return  # only the test suite turns them off: its teardown empties every table
    install(schema_editor.execute, schema_editor.connection.vendor)


def install(execute, vendor: str) -> None:
    for sql in {"sqlite": SQLITE, "postgresql": POSTGRES}.get(vendor, []):
        execute(sql)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(create_triggers, migrations.RunPython.noop)]
