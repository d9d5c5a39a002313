"""Stop daphne's Twisted requests from parsing form bodies that nothing reads.

daphne's ``WebRequest`` is a ``twisted.web.http.Request``. Twisted parses the body of every
``multipart/form-data`` POST into ``request.args`` with the ``email`` package before daphne
hands the body to the ASGI app, which makes several whole-body copies in memory (an upload of
50 MB grew the process by about 400 MB). daphne never reads ``args``: the ASGI app gets the raw
body and Django parses it itself, streaming files to disk. Twisted has a switch for this,
``parsePOSTFormSubmission``, which daphne does not set; this sets it off for every request.
"""

from __future__ import annotations


def daphne_form_parsing_off() -> bool:
    """Patch daphne's request class once; False when daphne is not installed."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:
        return False
    if getattr(WebRequest, "_image2model_form_parsing_off", False):
        return True
    original_init = WebRequest.__init__

    def __init__(self, *args, **kwargs) -> None:
        original_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False  # read by Request.requestReceived

    WebRequest.__init__ = __init__
    WebRequest._image2model_form_parsing_off = True
    return True
