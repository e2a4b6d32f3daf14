"""The ASGI application `make run` serves with uvicorn. Pages run in threads; answer streams wait
for the model on the event loop (regqa.streaming), so waiting answers hold no thread."""

import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "regqa.settings")
application = get_asgi_application()

# Load the models in the background so the first question does not pay for it.
from regqa.qa.answer import warm_up  # noqa: E402  (needs the apps loaded above)

threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
