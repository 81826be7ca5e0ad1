"""The console's JSON answers are JSON: never ``NaN`` or ``Infinity``.

Python's ``json`` writes a float infinity as ``Infinity`` unless told not to -- text no browser's
``JSON.parse`` reads, so one odd value (a manifest's ``created`` of ``1e999``, #29 atk4 B9) left a
page unable to read any of its answer. Every answer is written with ``allow_nan=False``; one that
holds such a value is a 500 with one JSON line naming where it is, logged once, instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

from rqp.jsonsafe import nan_path

__all__ = ["StrictJSONProvider"]

log = logging.getLogger(__name__)


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider writing strict JSON only, in the order the console built it."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().response(*args, **kwargs)
        except ValueError:
            where = nan_path(self._prepare_response_obj(args, kwargs)) or "a value that is not a JSON number"
            message = (
                f"the console's answer holds {where}, which is not JSON; it is not sent (report it as a console bug)"
            )
            log.warning("%s", message)
            answer = self._app.response_class(
                json.dumps({"error": message}, allow_nan=False) + "\n", mimetype=self.mimetype
            )
            answer.status_code = 500
            return answer
