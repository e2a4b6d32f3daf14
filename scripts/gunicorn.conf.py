"""gunicorn settings for `make run`: one process (models are loaded once) with threads."""

import threading

workers = 1
worker_class = "gthread"
threads = 8
timeout = 600  # answer streams stay open while the model writes


def post_worker_init(worker):
    # Load the models in the background so the first question does not pay for it.
    from regqa.qa.answer import warm_up

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
