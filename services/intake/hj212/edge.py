"""Intake's HJ 212-2017 TCP edge: thin. Frames in; readings on `report.v1.in.sensor`, or a rejection; answers.

Each connection is read as a stream (`Framer`); every frame is checked (`readings.check`) and becomes readings
published with a message id derived from the frame (a resent frame is one reading), or a `report.v1.rejected`
with the raw frame kept in `hj212_rejected`. The connection stays open either way. A frame whose Flag asks for
an answer gets the data response (CN=9014) once its readings are on the bus: a device that hears nothing sends
again, so a frame the bus could not take is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from zoneinfo import ZoneInfo

from contracts import subjects
from contracts.envelope import new_event_id
from contracts.reports import RejectionReason, ReportRejected
from services.intake.hj212.frame import Candidate, Framer, answer, unwrap
from services.intake.hj212.readings import check
from xiuhua.bus import Outgoing
from xiuhua.consumer import count
from xiuhua.retention import AT_S, Retained, dated
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.intake.hj212")

REJECTED = "hj212_rejected"
# The raw frames refused at the edge are raw input: kept as raw reports are (`retention.yaml`, raw_reports).
RETAINED = (Retained(REJECTED, AT_S, "raw_reports"),)
READ_SIZE = 64 * 1024


class Hj212Edge:
    """The listener, bound to one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.tz = ZoneInfo(rt.city.info.timezone)
        self.writers: set[asyncio.StreamWriter] = set()
        self.address = ""  # tcp://host:port once listening
        self.frames = rt.metrics.counter("xiuhua_hj212_frames", "HJ 212 frames by outcome", ("outcome",))
        self.skipped = rt.metrics.counter("xiuhua_hj212_skipped_bytes", "Bytes between frames skipped", ())

    async def listen(self) -> asyncio.Server:
        """Bind the listener (a port taken fails the start, loudly); `address` says where it listens."""
        settings = self.rt.settings
        host = settings.hj212_host or settings.http_host
        server = await asyncio.start_server(self._connection, host, settings.hj212_port or 0)
        port = server.sockets[0].getsockname()[1]
        self.address = f"tcp://{host}:{port}"
        log.info("HJ 212 edge listening on %s", self.address)
        return server

    async def serve(self, server: asyncio.Server) -> None:
        """Accept devices until cancelled; then close every connection."""
        try:
            async with server:
                await server.serve_forever()
        finally:
            for w in list(self.writers):
                w.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        framer = Framer()
        self.writers.add(writer)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout=self.rt.settings.hj212_idle_s)
                if not data:
                    break
                before = framer.skipped
                for candidate in framer.feed(data):
                    reply = await self._frame(candidate, peer)
                    if reply is not None:
                        writer.write(reply)
                        await writer.drain()
                if framer.skipped > before:
                    self.skipped.inc(framer.skipped - before)
        except (TimeoutError, ConnectionError):
            pass  # an idle or vanished device: it connects again
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _frame(self, candidate: Candidate, peer: str) -> bytes | None:
        """One frame: publish its readings (and return the answer it asks for), or reject it."""
        frame = unwrap(candidate)
        if isinstance(frame, str):
            await self._reject(candidate.raw, RejectionReason(code="bad_length", field="length", message=frame), peer)
            return None
        result = check(frame, self.rt.city.devices, self.tz)
        if isinstance(result, RejectionReason):
            await self._reject(frame.raw, result, peer)
            return None
        out = [
            Outgoing(subjects.report_subject("sensor"), r.model_dump_json(exclude_none=True).encode(), msg_id)
            for msg_id, r in result.readings
        ]
        try:
            await self.rt.publisher.send(out)
        except Exception:
            log.exception(
                "hj212: publishing the readings of %s failed; no answer, the device sends again", result.device.id
            )
            count(self.frames.labels("unpublished"))
            return None
        count(self.frames.labels("accepted"))
        return answer(result.segment) if result.segment.needs_answer else None

    async def _reject(self, raw: bytes, reason: RejectionReason, peer: str) -> None:
        """Keep the raw frame and say why on the bus, as every source's rejections are."""
        count(self.frames.labels(reason.code))
        raw_id = "hj212-" + new_event_id().replace("-", "")
        try:
            async with self.rt.store.outside_transactions():
                await self.rt.store[REJECTED].insert_one(
                    {
                        "_id": raw_id,
                        **dated(self.rt.clock.now()),
                        "peer": peer[:100],
                        "frame": raw,
                        "reasons": [reason.model_dump()],
                    }
                )
            await self.rt.publisher.publish(
                ReportRejected(correlation_id=f"hj212:{raw_id}", source="hj212", raw_id=raw_id, reasons=[reason])
            )
        except Exception:
            log.exception("hj212: keeping rejected frame %s failed", raw_id)


async def start(rt: Runtime) -> str | None:
    """Start the edge when the settings give it a port (0: any free port); returns where it listens."""
    if rt.settings.hj212_port is None:
        return None
    edge = Hj212Edge(rt)
    server = await edge.listen()
    rt.tasks.append(asyncio.create_task(edge.serve(server), name="intake:hj212"))
    return edge.address
