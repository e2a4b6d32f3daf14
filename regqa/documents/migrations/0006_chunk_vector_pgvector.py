"""On PostgreSQL, passage vectors live beside the passages: a `vector(384)` column with an HNSW
index for inner product (documents/index.py, PgVectorIndex). Nothing changes on SQLite, where
FAISS holds them. Existing passages get their vectors from their stored embeddings through
`manage.py index repair` (run by `make run` at start)."""

from django.db import migrations

from regqa.documents.embed import DIMENSIONS


def add_vector_column(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        if cursor.fetchone() is None:
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if cursor.fetchone() is None:
                raise RuntimeError(
                    "PostgreSQL has no pgvector extension: install it on the database server "
                    "(https://github.com/pgvector/pgvector), then run `CREATE EXTENSION vector;` in this database."
                )
            cursor.execute("CREATE EXTENSION vector")  # a superuser or the database owner may; else run it once
    schema_editor.execute(f"ALTER TABLE documents_chunk ADD COLUMN IF NOT EXISTS vector vector({DIMENSIONS})")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS documents_chunk_vector_hnsw ON documents_chunk "
        "USING hnsw (vector vector_ip_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [("documents", "0005_queued_at")]
    operations = [migrations.RunPython(add_vector_column, migrations.RunPython.noop)]
