"""One report's trace shows the four hops: intake opens the case, dispatch sends it, scoring counts it, notify
alerts on it, each a child of the message that caused it (the context travels in the headers, via the outbox)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import BusRecorder, eventually, patrol_report, publish, system
from xiuhua import tracing


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.exporter = exporter  # type: ignore[attr-defined]
    tracing.use(provider)
    yield provider
    tracing.use(None)


def _by_service(spans: list[ReadableSpan], trace_id: int) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        if span.context.trace_id == trace_id and span.attributes:
            out.setdefault(str(span.attributes.get(tracing.SERVICE_ATTR, "app")), []).append(span)
    return out


async def test_a_reports_trace_has_the_four_hops(settings, provider: TracerProvider) -> None:
    exporter: InMemorySpanExporter = provider.exporter  # type: ignore[attr-defined]
    app = provider.get_tracer("grid-app").start_span("send report")  # the inspector's app began the trace
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(app))
    app.end()
    async with BusRecorder(settings.nats_url) as bus, system(settings):
        await publish(settings.nats_url, "report.v1.in.grid", patrol_report(), msg_id="grid:R-1", headers=headers)
        delivered = await eventually(lambda: bus.on("notify.v1.delivered"))
        await eventually(lambda: bus.on("score.v1.unit_updated"))
        case_id = delivered[0]["case_id"]

        def hops() -> dict[str, list[ReadableSpan]] | None:
            found = _by_service(list(exporter.get_finished_spans()), app.get_span_context().trace_id)
            return found if {"intake", "dispatch", "scoring", "notify"} <= found.keys() else None

        spans = await eventually(hops)

    def one(service: str, consumer: str, subject_start: str) -> ReadableSpan:
        [span] = [
            s
            for s in spans[service]
            if s.attributes
            and s.attributes["messaging.consumer.group.name"] == consumer
            and str(s.attributes["messaging.destination.name"]).startswith(subject_start)
        ]
        return span

    intake = one("intake", "intake-reports", "report.v1.in.grid")
    dispatch = one("dispatch", "dispatch-opened", "case.v1.opened")
    scoring = one("scoring", "scoring-cases", "case.v1.dispatched")
    notify = one("notify", "notify-bulletin-cases", "case.v1.dispatched")
    assert intake.parent is not None and intake.parent.span_id == app.get_span_context().span_id
    assert dispatch.parent is not None and dispatch.parent.span_id == intake.context.span_id
    assert scoring.parent is not None and scoring.parent.span_id == dispatch.context.span_id
    assert notify.parent is not None and notify.parent.span_id == dispatch.context.span_id
    assert intake.attributes and intake.attributes["xiuhua.case_id"] == case_id
    assert dispatch.name == "process dispatch-opened" and dispatch.kind is trace.SpanKind.CONSUMER
    assert all(s.status.is_ok for s in (intake, dispatch, scoring, notify))


async def test_with_tracing_off_no_span_and_no_trace_header(settings) -> None:
    assert not tracing.on()
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake",)):
        await publish(settings.nats_url, "report.v1.in.grid", patrol_report("R-2"), msg_id="grid:R-2")
        await eventually(lambda: bus.on("case.v1.opened"))
    assert "traceparent" not in bus.headers_of("case.v1.opened")[0]
