"""Free-text classification: phrases, conjunctions, negatives, synonyms, character n-grams, the combined
confidence, transfers, triage with a best guess, the city's labelled orders, and the measured accuracy on the
labelled sets (printed by `xiuhua classify --eval`; cross-validation by `xiuhua classify --cv`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.intake.cases import domain_of
from services.intake.classifier import EXAMPLES_FILE, TEMPERATURE, Classifier, normalise, read_examples, weight
from services.intake.ngram import CentroidModel, ngrams
from xiuhua.city.categories import Catalogue
from xiuhua.city.intake import ClassifierSettings, Transfer
from xiuhua_tools.commands.classify import cross_validate, evaluate, load_rows

DATA = Path(__file__).resolve().parents[1] / "data"


def _tiny() -> Classifier:
    catalogue = Catalogue.model_validate(
        {
            "groups": [
                {
                    "code": "02",
                    "name_zh": "环境卫生",
                    "name_en": "Sanitation",
                    "items": [
                        {
                            "code": "0201",
                            "name_zh": "垃圾箱满溢",
                            "name_en": "Bin",
                            "lead_role": "sanitation",
                            "keywords": ["垃圾桶满", "垃圾桶+满"],
                            "negative_keywords": ["破损"],
                        },
                        {
                            "code": "0209",
                            "name_zh": "垃圾箱破损",
                            "name_en": "Bin broken",
                            "lead_role": "sanitation",
                            "keywords": ["垃圾桶破损", "垃圾桶+坏"],
                        },
                    ],
                },
                {
                    "code": "99",
                    "name_zh": "待分拣",
                    "name_en": "Triage",
                    "items": [
                        {"code": "9901", "name_zh": "待人工分拣", "name_en": "Triage", "lead_role": "command_centre"}
                    ],
                },
            ]
        }
    )
    transfers = [Transfer(id="wages", matter="欠薪", department="人社局", keywords=["拖欠工资", "工资+没给"])]
    return Classifier(catalogue, transfers, ClassifierSettings(synonyms={"垃圾筒": "垃圾桶"}))


def test_normalise_and_weights() -> None:
    assert normalise(" 垃圾 桶Ｍａｎ ") == "垃圾桶man"
    assert weight("井盖") == 1.0 and weight("垃圾桶+满") == 2.0 and weight("一二三四五六七八") == 3.0


def test_conjunction_synonym_and_negative_keywords() -> None:
    c = _tiny()
    v = c.classify("这个垃圾筒一直是满的")  # synonym 垃圾筒 → 垃圾桶, conjunction 垃圾桶+满
    assert (v.kind, v.code) == ("category", "0201") and v.confidence > 0.7
    v = c.classify("垃圾桶满了而且破损了")  # 破损 rules 0201 out
    assert v.code == "0209" or v.kind == "triage"
    assert c.classify("垃圾桶满了而且破损了").code != "0201"


def test_transfer_and_triage() -> None:
    c = _tiny()
    v = c.classify("老板拖欠工资三个月")
    assert (v.kind, v.code, v.department) == ("transfer", "wages", "人社局") and v.label == "transfer:wages"
    v = c.classify("请尽快派人来看看")
    assert (v.kind, v.code, v.confidence, v.label) == ("triage", "9901", 0.0, "triage")


def _twins() -> Classifier:
    """Two items whose names and phrases mirror each other: a text about both has no reason to prefer one."""
    catalogue = Catalogue.model_validate(
        {
            "groups": [
                {
                    "code": "02",
                    "name_zh": "环境卫生",
                    "name_en": "Sanitation",
                    "items": [
                        {
                            "code": "0201",
                            "name_zh": "垃圾桶满",
                            "name_en": "Bin full",
                            "lead_role": "sanitation",
                            "keywords": ["垃圾桶满"],
                        },
                        {
                            "code": "0209",
                            "name_zh": "垃圾桶坏",
                            "name_en": "Bin broken",
                            "lead_role": "sanitation",
                            "keywords": ["垃圾桶坏"],
                        },
                    ],
                },
                {
                    "code": "99",
                    "name_zh": "待分拣",
                    "name_en": "Triage",
                    "items": [
                        {"code": "9901", "name_zh": "待人工分拣", "name_en": "Triage", "lead_role": "command_centre"}
                    ],
                },
            ]
        }
    )
    return Classifier(catalogue, [], ClassifierSettings())


def test_a_tie_between_two_items_goes_to_manual_triage_with_a_best_guess() -> None:
    c = _twins()
    v = c.classify("垃圾桶满 垃圾桶坏")  # both items equally: probability 0.5 each, a tie is never decided
    assert v.kind == "triage" and v.code == "9901" and v.confidence == 0.5
    assert v.best_guess in {"0201", "0209"} and v.best_guess_confidence == v.confidence
    assert c.classify("垃圾桶满").code == "0201" and c.classify("垃圾桶坏").code == "0209"


def test_ngrams_and_centroids() -> None:
    g = ngrams("井盖+丢了a1")
    assert g["井盖"] == 1 and g["井"] == 1 and "盖丢" not in g  # n-grams never cross a `+`
    assert "a" not in g and "a1" in g  # a latin letter or digit alone is no feature
    m = CentroidModel([("井盖破损", "0301", 1.0), ("路灯不亮", "0302", 1.0)])
    sims = m.similarities("下水井的盖子碎了")
    assert sims["0301"] > sims.get("0302", 0.0)
    assert m.similarities("完全无关") == {}  # no shared n-gram: no label at all


def test_character_ngrams_carry_phrasing_no_keyword_foresaw(city) -> None:
    c = domain_of(city).rules
    text = "人行道上那块铺路的方砖松动了"  # none of the catalogue's phrases, nor a labelled order
    assert c.ranking(text) == []
    v = c.classify(text)
    assert (v.kind, v.code) == ("category", "0308") and v.confidence >= 0.5


def test_negative_keywords_rule_the_item_out_of_the_ngram_evidence_too(city) -> None:
    c = domain_of(city).rules
    assert "0302" not in {x.label for x in c.candidates("路灯杆倾斜了，灯也不亮")}
    assert c.classify("路灯杆倾斜了，灯也不亮").code == "0306"


def test_probabilities_are_a_distribution_and_deterministic(city) -> None:
    c = domain_of(city).rules
    text = "新塘路上有人摆摊卖水果"
    ranked = c.candidates(text)
    assert abs(sum(x.probability for x in ranked) - 1.0) < 1e-9
    assert ranked == c.candidates(text) and c.classify(text) == c.classify(text)
    again = Classifier(
        city.catalogue,
        city.intake.transfers,
        city.intake.classifier,
        read_examples(
            city.folder, set(c.by_label) | {c.settings.triage_code, "triage"} | {x.code for x in city.catalogue.items()}
        ),
    )
    assert again.candidates(text) == ranked


def test_vague_orders_are_triaged_with_the_best_item_as_a_guess(city) -> None:
    c = domain_of(city).rules
    v = c.classify("请尽快派人来看看")
    assert v.kind == "triage" and v.code == "9901" and v.confidence < 0.5
    assert v.best_guess is not None and v.best_guess_confidence == v.confidence
    assert c.classify("你好").kind == "triage"


def test_a_city_s_labelled_orders_are_checked(tmp_path: Path) -> None:
    assert read_examples(tmp_path, {"0201"}) == []  # no file: the catalogue alone
    (tmp_path / EXAMPLES_FILE).write_text(
        '{"text": "垃圾桶满了", "label": "0201"}\n\n{"text": "x", "label": "0999"}\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=rf"{EXAMPLES_FILE}:3: unknown label '0999'"):
        read_examples(tmp_path, {"0201"})
    (tmp_path / EXAMPLES_FILE).write_text('{"text": "垃圾桶满了", "label": "0201"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{EXAMPLES_FILE}:2:"):
        read_examples(tmp_path, {"0201"})


def test_the_demo_city_learns_from_the_tuned_sets_and_never_from_the_blind_ones(city) -> None:
    """The blind sets measure generalisation only while no line of theirs is learnt from."""
    learnt = (city.folder / EXAMPLES_FILE).read_text(encoding="utf-8").splitlines()
    tuned = [
        line
        for name in ("eval", "holdout", "blind")
        for line in (DATA / f"intake_classify_{name}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [x for x in learnt if x.strip()] == [x for x in tuned if x.strip()]
    learnt_texts = {r["text"] for r in load_rows(city.folder / EXAMPLES_FILE)}
    for name in ("blind2", "blind3"):
        assert not learnt_texts & {r["text"] for r in load_rows(DATA / f"intake_classify_{name}.jsonl")}


def test_demo_catalogue_classifies_the_problems_the_plans_name(city) -> None:
    c = domain_of(city).rules
    assert c.classify("小区消防通道被杂物堵塞").code == "0103"
    assert c.classify("有人从楼上拉电线下来给电瓶车充电").code == "0901"
    assert c.classify("楼道里堆满了纸箱").code == "0902"
    assert c.classify("工地扬尘很大").code == "0701"
    assert c.classify("小区里有辆僵尸车").code == "0802"
    assert c.classify("孩子入学划片不合理").label == "transfer:schooling"
    assert c.classify("接到诈骗电话被骗了").label == "transfer:fraud"
    assert c.classify("路灯杆倾斜了").code == "0306"  # not 0302: 路灯杆倾斜 is a negative keyword of street lamps


def test_accuracy_on_the_labelled_sets(city) -> None:
    """The figures docs/services/intake-classification.md reports; they guard against regressions, not the goal."""
    # The tuned sets are what the city's classifier learns from: these are training figures.
    tuned = evaluate(city, load_rows(DATA / "intake_classify_eval.jsonl"))
    assert tuned["total"] >= 150 and tuned["accuracy"] >= 0.95
    assert tuned["items_per_s"] > 0 and tuned["ms_per_item"] > 0
    # Every miss is visible: an error row names what was expected and what came out.
    blind3 = evaluate(city, load_rows(DATA / "intake_classify_blind3.jsonl"))
    assert all({"text", "expected", "got"} <= e.keys() for e in blind3["errors"])
    # The sets never learnt from nor tuned on (36.1 % and 55.6 % with phrases alone).
    assert blind3["total"] >= 150 and blind3["accuracy"] >= 0.6 and blind3["decided_precision"] >= 0.75
    assert {g for g in blind3["by_group"]} >= {f"{g:02d}" for g in range(1, 14)} | {"transfer", "triage"}
    blind2 = evaluate(city, load_rows(DATA / "intake_classify_blind2.jsonl"))
    assert blind2["total"] >= 60 and blind2["accuracy"] >= 0.75 and blind2["decided_precision"] >= 0.8


def test_cross_validation_fits_the_temperature_in_use(city) -> None:
    """TEMPERATURE is the maximum-likelihood value on k-fold cross-validation of the city's labelled orders."""
    r = cross_validate(city, 5)
    assert r["total"] == 340 and r["accuracy"] >= 0.9
    assert r["best_temperature"] == TEMPERATURE
