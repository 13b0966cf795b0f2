"""Traces of a report through the services (OpenTelemetry), off unless `XIUHUA_TRACING` is set.

Each message a consumer applies gets a span, a child of the span that published it: the W3C `traceparent` header
travels with every event a handler emits, through the ledger's outbox (a republished event keeps the context of
the message that caused it), so one report's trace shows intake opening the case, dispatch sending it, scoring
counting it and notify alerting on it. The spans are made here with the OpenTelemetry API rather than by
FastStream's telemetry middleware: the batch consumer hands FastStream a batch of up to a thousand messages, each
of its own trace, applied in one transaction, and publishes what they caused from the outbox after the commit,
where the middleware would see neither the message nor its cause.

Off, nothing is done per message (no span, no header). On, spans go over OTLP/HTTP to a collector
(`XIUHUA_TRACING_ENDPOINT`, else the standard `OTEL_EXPORTER_OTLP_*` variables).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from xiuhua.settings import Settings

INSTRUMENTATION = "xiuhua"
SERVICE_ATTR = "xiuhua.service"

_tracer: Tracer | None = None  # None: tracing is off
_provider: TracerProvider | None = None


def configure(settings: Settings, service: str) -> None:
    """Export this process's spans to the collector when tracing is on (a service process calls it once)."""
    if not settings.tracing:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"xiuhua-{service}", "service.namespace": "xiuhua"}),
        # A report's trace is whole or absent: the first hop decides, every later hop follows its parent.
        sampler=ParentBased(TraceIdRatioBased(settings.tracing_sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.tracing_endpoint)))
    use(provider)


def use(provider: TracerProvider | None) -> None:
    """Trace with `provider` from now on (None: stop tracing); tests give one with an in-memory exporter."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION) if provider is not None else None


def shutdown() -> None:
    """Send the spans still buffered and stop (at the end of a service process)."""
    if _provider is not None:
        _provider.shutdown()
    use(None)


def on() -> bool:
    """Whether spans are being made."""
    return _tracer is not None


def consuming(service: str, consumer: str, subject: str, headers: Mapping[str, str], msg_id: str) -> Span | None:
    """A span for one message a consumer applies, continuing the trace its headers carry (None when off)."""
    if _tracer is None:
        return None
    return _tracer.start_span(
        f"process {consumer}",
        context=propagate.extract(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            SERVICE_ATTR: service,
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
            "messaging.consumer.group.name": consumer,
            "messaging.message.id": msg_id,
        },
    )


def headers_for(span: Span | None) -> tuple[tuple[str, str], ...]:
    """The headers that make the receiver of an event a child of `span` (none when off)."""
    if span is None:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return tuple(carrier.items())


def end(spans: Iterable[tuple[Span | None, str | None]]) -> None:
    """End each span, marked as an error with the reason where the message was not applied."""
    for span, error in spans:
        if span is None:
            continue
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


def annotate(span: Span | None, **attributes: Any) -> None:
    """Add what the handler learnt (the case id ...) to a message's span."""
    if span is not None:
        span.set_attributes({f"xiuhua.{k}": v for k, v in attributes.items() if v is not None})
