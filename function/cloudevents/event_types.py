"""The event API in one place: the types the service reads and answers with, and the extension
attributes of its replies (CloudEvents names: ``a-z`` and ``0-9``, at most 20 characters)."""

from __future__ import annotations

#: Reverse-DNS prefix of the service's event types.
TYPE_PREFIX = "io.github.newsgroups-classifier"
#: Asks for a classification; its data is what ``POST /prediction`` (``{"text": ...}``) or
#: ``POST /predictions`` (``{"texts": [...]}``) takes, with ``"scores"`` and ``"explain"`` as booleans.
CLASSIFY = f"{TYPE_PREFIX}.text.classify"
#: The answer; its data is what ``POST /prediction`` or ``POST /predictions`` answers.
CLASSIFIED = f"{TYPE_PREFIX}.text.classified"
#: The type that answers each type the service reads.
REPLY_TYPES = {CLASSIFY: CLASSIFIED}

#: The ``id`` of the event answered (the CloudEvents Correlation extension).
CAUSATION_ID = "causationid"
#: The ``source`` of the event answered (ours: an ``id`` is unique within its source only).
CAUSATION_SOURCE = "causationsource"
#: The answered event's ``correlationid``, else its ``id`` (the Correlation extension).
CORRELATION_ID = "correlationid"
#: The version of the model that answered (ours).
MODEL_VERSION = "modelversion"
#: Every extension attribute a reply carries.
REPLY_EXTENSIONS = (CAUSATION_ID, CAUSATION_SOURCE, CORRELATION_ID, MODEL_VERSION)

#: Where events are posted (Knative's ``func`` templates answer events at the root too).
EVENTS_PATH = "/"
#: The ``source`` of reply events unless ``EVENT_SOURCE`` says otherwise.
DEFAULT_SOURCE = "/newsgroups-classifier"
#: The ``route`` label of ``POST /`` in the metrics (``GET /``, the index, has ``/``).
EVENTS_ROUTE = "/ (cloudevents)"
