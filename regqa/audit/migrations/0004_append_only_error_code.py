"""On PostgreSQL, the append-only trigger reports an integrity violation (as SQLite's does), so
Django raises IntegrityError for a refused change on both databases."""

from django.db import migrations


def replace_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from importlib import import_module

    triggers = import_module("regqa.audit.migrations.0002_append_only_triggers")
    schema_editor.execute(triggers.POSTGRES[0])  # CREATE OR REPLACE FUNCTION: the trigger stays


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_audit_seal")]
    operations = [migrations.RunPython(replace_function, migrations.RunPython.noop)]
