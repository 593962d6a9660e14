import logging
import sys

from aiohttp.http_exceptions import LineTooLong

from presence.logs import MalformedRequestFilter


def test_a_request_the_parser_refused_is_one_warning_without_traceback_or_content() -> None:
    try:
        raise LineTooLong(b"Bearer secret-token" * 1000, 8190)
    except LineTooLong:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request",
            (),
            sys.exc_info(),
        )
    assert MalformedRequestFilter().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "malformed HTTP request refused (LineTooLong)"

    other = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "boom", (), None)
    assert MalformedRequestFilter().filter(other) and other.levelno == logging.ERROR
