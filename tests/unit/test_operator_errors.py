"""An operator command pointed at a server that is not there answers with a sentence, within seconds."""

from __future__ import annotations

import time

import pytest

from xiuhua import embedded, settings
from xiuhua_tools import cli


@pytest.mark.parametrize("argv", [["streams"], ["dlq", "list"]])
def test_an_unreachable_bus_is_one_sentence_not_a_hang(argv, monkeypatch, capsys):
    url = f"nats://127.0.0.1:{embedded.free_port()}"  # nothing listens there
    monkeypatch.setenv("XIUHUA_NATS_URL", url)
    settings.get_settings.cache_clear()
    started = time.monotonic()
    try:
        code = cli.main(argv)
    finally:
        settings.get_settings.cache_clear()
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot reach NATS at {url}" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert elapsed < 20  # nats-py's own default is 60 attempts 2 s apart
