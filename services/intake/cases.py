"""Turning a valid report into a case draft, a transfer or a rejection: category, place, urgency. Pure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from contracts.reports import GridReport, HotlineOrder, Inbound, InspectionFinding, RejectionReason, SensorReading
from contracts.values import Location, Place, Urgency
from services.intake import privacy
from services.intake.classifier import (
    OUT_OF_SCOPE_LABEL,
    TRIAGE_LABEL,
    Classifier,
    TextClassifier,
    Verdict,
    read_examples,
)
from services.intake.gazetteer import Gazetteer
from services.intake.geo import to_wgs84
from services.intake.model_classifier import ModelClassifier
from services.intake.textmodel import MODEL_FILE, ModelError, TextModel
from xiuhua.city import City

log = logging.getLogger("xiuhua.intake")


@dataclass(frozen=True)
class Draft:
    """What intake knows about a new case before it is opened."""

    category_code: str
    category_name: str
    confidence: float
    description: str
    place: Place
    urgency: Urgency
    verdict: Verdict | None = None  # how free text was classified (None: the source named the category)

    @property
    def suggestion(self) -> tuple[str | None, float | None]:
        """A triaged case's best guess (catalogue code, probability) for the command centre; else (None, None)."""
        v = self.verdict
        if v is None or v.kind != "triage" or v.best_guess is None:
            return None, None
        return v.best_guess, v.best_guess_confidence


@dataclass(frozen=True)
class TransferDraft:
    """A matter outside city management, for an outside department (转办)."""

    department: str
    matter: str
    confidence: float
    description: str
    place: Place
    transfer_id: str | None = None  # the matter's id in intake.yaml


class Domain:
    """The city's classifier and gazetteer, built once per city.

    The classifier in use is the city's learnt model (`classifier_model.npz` in its folder) when there is one,
    else the keyword and n-gram classifier trained on `classifier_examples.jsonl`. A new model file is picked up
    without a restart: the file is looked at again at most every RELOAD_CHECK_S seconds, and a file that cannot
    be read leaves the model in use (and is logged)."""

    RELOAD_CHECK_S = 2.0

    def __init__(self, city: City) -> None:
        self.city = city
        self.gazetteer = Gazetteer(city)
        self.model_path = city.folder / MODEL_FILE
        self.model_error: str | None = None
        self._model: ModelClassifier | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self.reload()

    @cached_property
    def rules(self) -> Classifier:
        """The keyword and n-gram classifier trained on the city's labelled orders (built when first needed)."""
        city = self.city
        examples = read_examples(city.folder, example_labels(city))
        return Classifier(city.catalogue, city.intake.transfers, city.intake.classifier, examples)

    def reload(self) -> bool:
        """Load the model file if it changed since the last look; whether a new model is now in use."""
        self._checked = time.monotonic()
        try:
            st = self.model_path.stat()
        except FileNotFoundError:
            changed = self._model is not None
            self._model, self._stamp = None, None
            return changed
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self._model = ModelClassifier(self.city, TextModel.load(self.model_path))
            self.model_error = None
        except (ModelError, ValueError) as exc:
            self.model_error = str(exc)
            log.error("classifier model not loaded, keeping the one in use: %s", exc)
            return False
        log.info("classifier model %s in use (%d orders)", self._model.version, self._model.model.card.trained_on)
        return True

    @property
    def classifier(self) -> TextClassifier:
        """The classifier in use: the learnt model, else the keyword and n-gram classifier."""
        if time.monotonic() - self._checked >= self.RELOAD_CHECK_S:
            self.reload()
        return self._model if self._model is not None else self.rules

    @property
    def classifier_info(self) -> dict[str, Any]:
        """What `/health` shows of the classifier in use."""
        c = self.classifier
        if isinstance(c, ModelClassifier):
            info: dict[str, Any] = {"kind": "model", **c.model.card.summary}
        else:
            info = {"kind": "keywords", "version": c.version, "trained_on": getattr(c, "trained_on", None)}
        if self.model_error:
            info["model_error"] = self.model_error
        return info


def example_labels(city: City) -> set[str]:
    """What a labelled example may be: a catalogue code, `transfer:<id>`, triage or out of scope."""
    return (
        {c.code for c in city.catalogue.items()}
        | {f"transfer:{t.id}" for t in city.intake.transfers}
        | {TRIAGE_LABEL, OUT_OF_SCOPE_LABEL}
    )


_DOMAINS: dict[int, Domain] = {}


def domain_of(city: City) -> Domain:
    """The cached Domain of a loaded city."""
    d = _DOMAINS.get(id(city))
    if d is None or d.city is not city:
        d = _DOMAINS[id(city)] = Domain(city)
    return d


def text_of(report: Inbound) -> str:
    """The report's words: title and content of a work order, a description, a note; personal data masked (the
    words travel on the bus in the case)."""
    parts = [getattr(report, n, None) for n in ("title", "content", "description", "note")]
    seen: list[str] = []
    for p in parts:
        if isinstance(p, str) and p and p not in seen:
            seen.append(p)
    return privacy.scrub(" ".join(seen))


def classify(text: str, city: City) -> tuple[str, float] | None:
    """The catalogue item for a text with its confidence, or None when it must be triaged or transferred."""
    v = domain_of(city).classifier.classify(text)
    return (v.code, v.confidence) if v.kind == "category" else None


def place_report(report: Inbound, city: City, text: str = "") -> Place | RejectionReason:
    """Where the report is: a point (converted to WGS84), a grid code, the gazetteer on the address, then on
    the text; a point outside the city is refused; nothing placeable is left to manual placement (人工定位)."""
    address = getattr(report, "address", None) or None
    if address:
        address = privacy.scrub(address)  # it travels with the case: "解放路18号 电话138…" happens
    loc = getattr(report, "location", None)
    if loc is not None and loc.given:
        return place_point(loc, city, address)
    grid = getattr(report, "grid_code", None)
    if grid and grid in city.areas.by_code:
        return city.areas.place_of_area(grid, address=address).model_copy(update={"placed_by": "grid"})
    gazetteer = domain_of(city).gazetteer
    words = text or text_of(report)
    found = gazetteer.place(address, address, context=words) or gazetteer.place(words, address)
    if found is not None:
        return found.model_copy(update={"placed_by": "gazetteer"})
    return Place(address=address, placed_by="manual")


def place_point(loc: Location, city: City, address: str | None = None) -> Place | RejectionReason:
    """The areas of a point in any coordinate system, or `out_of_city`."""
    lng, lat = to_wgs84(loc.lng, loc.lat, loc.coord_system)
    place = city.areas.place_of_point(lng, lat, address)
    if place is None:
        return RejectionReason(
            code="out_of_city", field="location", message=f"the point ({lng:.6f}, {lat:.6f}) WGS84 is outside the city"
        )
    return place.model_copy(update={"placed_by": "point"})


def device_place(reading: SensorReading, city: City) -> Place:
    """Where a reading without a usable point comes from: the registered device's point, else its site's name in
    the gazetteer (桥西建筑工地 → JQ02-03), else manual placement (人工定位)."""
    device = city.devices.by_id.get(reading.device_id)
    site = reading.site_id or (device.site_id if device is not None else None)
    if device is not None and device.lng is not None and device.lat is not None:
        placed = city.areas.place_of_point(device.lng, device.lat, site)
        if placed is not None:  # devices.yaml is checked at start-up: a registered point is in the city
            return placed.model_copy(update={"placed_by": "device"})
    if site and (found := domain_of(city).gazetteer.place(site, site)) is not None:
        return found.model_copy(update={"placed_by": "gazetteer"})
    return Place(address=site, placed_by="manual")


def _named_category(report: Inbound, city: City) -> str | None:
    code = getattr(report, "category_code", None)
    if code:
        return code
    service = getattr(report, "service_code", None)
    if service and (item := city.catalogue.by_service_code(service)) is not None:
        return item.code
    return None


def draft_case(report: Inbound, city: City) -> Draft | TransferDraft | list[RejectionReason]:
    """Category, place and urgency for a report, a transfer out of scope, or why it cannot be a case."""
    text = text_of(report)
    code = _named_category(report, city)
    confidence = 1.0
    verdict: Verdict | None = None
    if code is not None and city.category(code) is None:
        if isinstance(report, GridReport | InspectionFinding):
            return [RejectionReason(code="unknown_category", field="category_code", message=f"no category {code}")]
        code = None
    if code is None:
        hint = getattr(report, "hotline_category", None) if isinstance(report, HotlineOrder) else None
        verdict = domain_of(city).classifier.classify(f"{text} {hint or ''}")
        place = place_report(report, city, text)
        if isinstance(place, RejectionReason):
            return [place]
        if verdict.kind == "transfer":
            assert verdict.department is not None and verdict.matter is not None
            return TransferDraft(
                verdict.department, verdict.matter, verdict.confidence, text[:2000], place, verdict.code
            )
        code, confidence = verdict.code, verdict.confidence
    else:
        place = place_report(report, city, text)
        if isinstance(place, RejectionReason):
            return [place]
    category = city.category(code)
    if category is None:
        return [RejectionReason(code="unknown_category", field=None, message=f"no category {code} in the catalogue")]
    urgent = category.urgency == Urgency.urgent or bool(getattr(report, "urgent", False))
    return Draft(
        category_code=category.code,
        category_name=category.name_zh,
        confidence=confidence,
        description=text[:2000],
        place=place,
        urgency=Urgency.urgent if urgent else Urgency.normal,
        verdict=verdict,
    )


def sensor_draft(city: City, category_code: str, place: Place, description: str, urgent: bool) -> Draft:
    """The draft of a case whose category intake did not classify: a device's, a corrected transfer's."""
    category = city.category(category_code)
    assert category is not None, "intake.yaml is cross-checked against the catalogue at start-up"
    urgency = Urgency.urgent if urgent or category.urgency == Urgency.urgent else Urgency.normal
    return Draft(category.code, category.name_zh, 1.0, description[:2000], place, urgency)


def merchant_drafts(city: City, merchant_id: str, failed: list[str], note: str | None) -> list[tuple[str, Draft]]:
    """One 门前三包 violation draft per failed duty item of a merchant: (item, draft)."""
    merchant = city.merchants[merchant_id]
    settings = city.intake
    if merchant.lng is not None and merchant.lat is not None:
        place = city.areas.place_of_point(merchant.lng, merchant.lat, merchant.address) or Place(
            address=merchant.address
        )
    elif merchant.area in city.areas.by_code:
        place = city.areas.place_of_area(merchant.area, address=merchant.address)
    else:
        place = Place(address=merchant.address)
    out: list[tuple[str, Draft]] = []
    for item in failed:
        code = settings.merchant_duties.get(item, settings.merchant_default_category)
        category = city.category(code)
        assert category is not None
        words = f"{merchant.name}（{merchant.id}）门前责任未落实：{category.name_zh}（{item}）"
        if note:
            words += f"。{privacy.scrub(note)}"
        out.append((item, Draft(category.code, category.name_zh, 1.0, words[:2000], place, category.urgency)))
    return out


def failed_items(items: dict[str, Any]) -> list[str]:
    """The duty items a check failed, in a stable order."""
    return sorted(k for k, v in items.items() if v == "fail")
