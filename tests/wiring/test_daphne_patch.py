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


def _feed(body: bytes, chunk: int):
    """daphne's own feeding loop (http_protocol.WebRequest.process) against a BodyQueue."""
    import asyncio
    import tempfile

    from image2model.daphne_patch import _body_queue_class

    content = tempfile.TemporaryFile()  # noqa: SIM115  Twisted's body file, left open as Twisted does
    content.write(body)
    content.seek(0)
    request = SimpleNamespace(content=content)
    queue = _body_queue_class()(request)
    while True:  # as daphne does it
        data = request.content.read(chunk)
        more_body = not (len(data) < chunk)
        queue.put_nowait({"type": "http.request", "body": data, "more_body": more_body})
        if not more_body:
            break
    queued_by_daphne = queue.qsize()

    async def receive_all():
        messages = []
        while True:
            message = await queue.get()
            messages.append(message)
            if not message.get("more_body"):
                return messages

    return queued_by_daphne, asyncio.run(receive_all()), content


def test_the_body_is_read_from_its_file_as_the_application_asks_for_it():
    body = bytes(range(256)) * 1000  # 256,000 bytes: 31 chunks of 8192 and a short one
    queued, messages, content = _feed(body, 8192)
    assert queued == 1  # daphne put one chunk; the rest waited on disk
    assert b"".join(m["body"] for m in messages) == body
    assert [m["more_body"] for m in messages] == [True] * 31 + [False]
    assert not content.closed  # Twisted closes it when the request ends


def test_a_body_of_whole_chunks_and_a_small_one_end_properly():
    for size in (8192 * 3, 100, 0):
        body = b"x" * size
        _, messages, _ = _feed(body, 8192)
        assert b"".join(m["body"] for m in messages) == body
        assert messages[-1]["more_body"] is False and all(m["more_body"] for m in messages[:-1])


def test_a_closed_body_file_reads_as_a_disconnect():
    import asyncio
    import tempfile

    from image2model.daphne_patch import _body_queue_class

    content = tempfile.TemporaryFile()  # noqa: SIM115  closed below, as Twisted would
    content.write(b"y" * 50000)
    content.seek(0)
    request = SimpleNamespace(content=content)
    queue = _body_queue_class()(request)
    queue.put_nowait({"type": "http.request", "body": content.read(8192), "more_body": True})
    content.close()  # the client went away; Twisted closed the file
    first, second = asyncio.run(_two(queue))
    assert first["more_body"] is True and second == {"type": "http.disconnect"}


async def _two(queue):
    return await queue.get(), await queue.get()


def test_the_server_patch_applies_to_this_daphne():
    from daphne.server import Server

    from image2model.daphne_patch import daphne_body_fed_lazily

    assert daphne_body_fed_lazily()  # fails when daphne moves on from 4.2: re-check the copy
    assert Server._image2model_body_fed_lazily
