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


# --- the request body, fed as the application reads it ----------------------------------------
#
# Twisted has received the whole body before daphne starts the application: in a temporary file
# when it is larger than 100 KB. daphne then reads that file to its end and puts every chunk in
# the application's queue at once, so the whole body sits in memory until Django has copied it
# to its own spooled file. Here the queue reads the file one chunk per ``receive()`` instead: the
# body goes from disk to disk through one chunk of memory.


class _Drained:
    """Stands in for the request's body file in daphne's feeding loop: already read to the end.

    Everything but ``read`` goes to the real file (Twisted closes it when the request ends).
    """

    def __init__(self, real) -> None:
        self._real = real

    def read(self, *args):
        return b""

    def __getattr__(self, name):
        return getattr(self._real, name)


def _body_queue_class():
    import asyncio

    class BodyQueue(asyncio.Queue):
        """The application's queue; after daphne's first body chunk it reads the rest lazily."""

        def __init__(self, request) -> None:
            super().__init__()
            self._request = request
            self._source = None  # the body file, while chunks are left in it
            self._chunk_size = 0
            self._drained = False

        def put_nowait(self, item) -> None:
            if item.get("type") == "http.request":
                if self._drained:
                    return  # daphne's loop ending on the stand-in; the real end comes from get()
                real = getattr(self._request, "content", None)
                if item.get("more_body") and real is not None and not self._source:
                    self._source, self._chunk_size = real, len(item["body"])
                    self._request.content = _Drained(real)  # daphne's next read ends its loop
                    self._drained = True
            super().put_nowait(item)

        async def get(self):
            if self.empty() and self._source is not None:
                try:
                    chunk = self._source.read(self._chunk_size)
                except ValueError:  # Twisted closed it: the client has gone
                    self._source = None
                    return {"type": "http.disconnect"}
                more_body = len(chunk) == self._chunk_size
                if not more_body:
                    self._source = None
                return {"type": "http.request", "body": chunk, "more_body": more_body}
            return await super().get()

    return BodyQueue


def daphne_body_fed_lazily() -> bool:
    """Make daphne's server give each HTTP application a :class:`BodyQueue`; False without
    daphne. The method below is daphne 4.2's ``Server.create_application`` with that one
    change (tests/wiring/test_daphne_patch.py checks the version it was taken from)."""
    try:
        import daphne
        from daphne.server import Server
    except ImportError:
        return False
    if getattr(Server, "_image2model_body_fed_lazily", False):
        return True
    if not daphne.__version__.startswith("4.2."):
        return False  # another daphne: keep its own feeding rather than guess
    import asyncio
    from functools import partial

    body_queue = _body_queue_class()

    def create_application(self, protocol, scope):
        assert "application_instance" not in self.connections[protocol]
        input_queue = body_queue(protocol) if scope.get("type") == "http" else asyncio.Queue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance,
            loop=asyncio.get_event_loop(),
        )
        return input_queue

    Server.create_application = create_application
    Server._image2model_body_fed_lazily = True
    return True
