"""daphne's requests do not parse form bodies (nothing reads them; they cost whole-body copies)."""

from __future__ import annotations

from types import SimpleNamespace

from daphne.http_protocol import WebRequest
from twisted.web import http
from twisted.web.test.requesthelper import DummyChannel

from image2model.daphne_patch import daphne_form_parsing_off


def test_daphne_requests_leave_multipart_bodies_unparsed():
    assert daphne_form_parsing_off()
    assert daphne_form_parsing_off()  # a second call changes nothing
    server = SimpleNamespace(protocol_connected=lambda request: None)
    channel = DummyChannel()
    channel.factory = SimpleNamespace(server=server)
    request = WebRequest(channel)
    assert request._parsePOSTFormSubmission is False
    assert http.Request(channel)._parsePOSTFormSubmission is True  # Twisted itself unchanged
