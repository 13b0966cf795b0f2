"""Trace context: continued from a message's headers, handed to what it causes, kept in the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from xiuhua import tracing
from xiuhua.bus import Outgoing
from xiuhua.ledger import _doc, outgoing_of
from xiuhua.settings import Settings


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


def test_off_by_default_nothing_is_made() -> None:
    assert Settings().tracing is False
    tracing.configure(Settings(), "intake")  # off: installs nothing
    assert not tracing.on()
    assert tracing.consuming("intake", "intake-reports", "report.v1.in.grid", {}, "k") is None
    assert tracing.headers_for(None) == ()


def test_a_message_span_continues_its_headers_and_hands_its_context_on(exporter: InMemorySpanExporter) -> None:
    upstream = trace.get_tracer("test", tracer_provider=TracerProvider()).start_span("upstream")
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(upstream))
    span = tracing.consuming("dispatch", "dispatch-opened", "case.v1.opened.CD", carrier, "dispatch-opened:e-1")
    assert span is not None
    handed = dict(tracing.headers_for(span))
    assert handed["traceparent"].split("-")[1:3] == [
        f"{upstream.get_span_context().trace_id:032x}",
        f"{span.get_span_context().span_id:016x}",
    ]
    tracing.annotate(span, case_id="C-1", unit_id=None)
    tracing.end([(span, None)])
    [done] = exporter.get_finished_spans()
    assert done.parent is not None and done.parent.span_id == upstream.get_span_context().span_id
    assert done.attributes is not None and done.attributes["xiuhua.case_id"] == "C-1"
    assert "xiuhua.unit_id" not in done.attributes  # a None says nothing
    assert done.attributes["messaging.destination.name"] == "case.v1.opened.CD"


def test_a_message_without_context_starts_a_trace_and_a_failure_is_marked(exporter: InMemorySpanExporter) -> None:
    ok = tracing.consuming("intake", "intake-reports", "report.v1.in.grid", {}, "a")
    failed = tracing.consuming("intake", "intake-reports", "report.v1.in.grid", {}, "b")
    tracing.end([(ok, None), (failed, "dead-lettered: Poison: not JSON")])
    spans = {s.attributes["messaging.message.id"]: s for s in exporter.get_finished_spans() if s.attributes}
    assert spans["a"].parent is None and spans["a"].status.status_code is StatusCode.UNSET
    assert spans["b"].status.status_code is StatusCode.ERROR
    assert spans["b"].status.description == "dead-lettered: Poison: not JSON"


def test_the_outbox_keeps_an_events_trace_headers() -> None:
    traced = Outgoing("case.v1.opened.CD", b"{}", "e-1", (("traceparent", "00-" + "a" * 32 + "-" + "b" * 16 + "-01"),))
    plain = Outgoing("case.v1.opened.CD", b"{}", "e-2")
    doc = _doc("intake-reports:r-1", [traced, plain], datetime.now(UTC))
    assert "h" not in doc["events"][1]  # nothing stored for an event without headers
    assert outgoing_of(doc) == [traced, plain]
    written_before = {"events": [{"s": "case.v1.opened.CD", "b": "{}", "id": "e-3"}]}
    assert outgoing_of(written_before) == [Outgoing("case.v1.opened.CD", b"{}", "e-3")]


@pytest.mark.parametrize(("ratio", "recorded"), [(0.0, False), (1.0, True)])
def test_on_by_the_setting_a_service_exports_as_itself(ratio: float, recorded: bool) -> None:
    settings = Settings(tracing=True, tracing_endpoint="http://127.0.0.1:9/v1/traces", tracing_sample_ratio=ratio)
    tracing.configure(settings, "dispatch")
    try:
        assert tracing.on()
        provider = tracing._provider
        assert provider is not None and provider.resource.attributes["service.name"] == "xiuhua-dispatch"
        span = tracing.consuming("dispatch", "dispatch-opened", "case.v1.opened.CD", {}, "k")
        assert span is not None and span.is_recording() is recorded  # the first hop decides by the ratio
        # A later hop follows its parent's decision, whatever its own ratio.
        sampled_parent = (
            dict(tracing.headers_for(span)) if recorded else {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        )
        child = tracing.consuming("notify", "notify-cases", "case.v1.dispatched.CD", sampled_parent, "k2")
        assert child is not None and child.is_recording()
    finally:
        tracing.shutdown()
    assert not tracing.on()
