from django.apps import AppConfig
from django.core import checks


class DocumentsConfig(AppConfig):
    name = "regqa.documents"
    verbose_name = "Documents"

    def ready(self) -> None:
        checks.register(database_check)


def database_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The database must answer at start-up (`manage.py check`, run by `make run` first), and
    with the pgvector index offer the vector extension: one error naming the problem, not a
    stack trace on the first page."""
    from django.db import connection
    from django.db.utils import OperationalError

    from .index import engine

    try:
        connection.ensure_connection()
    except OperationalError as exc:
        where = connection.settings_dict.get("HOST") or connection.settings_dict.get("NAME")
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [
            checks.Error(
                f"The database ({connection.vendor} at {where}) cannot be reached: {first_line}",
                hint="Start the database server or fix DATABASE_URL.",
                id="regqa.E002",
            )
        ]

    if engine() != "pgvector" or connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if cursor.fetchone() is None:
            return [
                checks.Error(
                    "This PostgreSQL server has no pgvector extension, which holds RegQA's passage vectors.",
                    hint="Install pgvector on the database server, then run `CREATE EXTENSION vector;` "
                    "in RegQA's database (or set REGQA_VECTOR_INDEX=faiss).",
                    id="regqa.E003",
                )
            ]
    return []
