"""The comparison and the noise model as pure functions: no sockets."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.flags import Compare
from proxy.shadow.compare import CompareRules, Observed, compare
from proxy.shadow.diff import DiffRules, FieldDiff, canonical_timestamp, diff_json, ignore_pattern
from proxy.shadow.noise import NoiseModel
from proxy.shadow.sampling import sampled

JSON = {"content-type": "application/json"}


def rules(**compare: object) -> CompareRules:
    return CompareRules.from_config(Compare.model_validate(compare))


def answer(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Observed:
    return Observed(status, headers or JSON, orjson.dumps(body))


def paths(legacy: object, new: object, **compare: object) -> list[str]:
    return [d.path for d in compare_(legacy, new, **compare)]


def compare_(legacy: object, new: object, **compare_config: object) -> list[FieldDiff]:
    return compare(answer(legacy), answer(new), rules(**compare_config))


def test_identical_answers_match() -> None:
    body = {"items": [{"id": 1, "price": 9.5}], "total": 1}
    assert paths(body, body) == []


def test_field_paths_name_the_difference() -> None:
    legacy = {"items": [{"price": 1}, {"price": 2}, {"price": 3}, {"price": 4}], "meta": {"n": 4}}
    new = {"items": [{"price": 1}, {"price": 2}, {"price": 3}, {"price": 5}], "meta": {"n": 4}}
    diffs = compare_(legacy, new)
    assert [(d.path, d.legacy, d.new, d.pattern) for d in diffs] == [
        ("body.items[3].price", 4, 5, "body.items[*].price")
    ]


def test_missing_and_extra_fields_and_list_lengths() -> None:
    legacy = {"a": 1, "b": [1, 2]}
    new = {"b": [1, 2, 3], "c": True}
    assert paths(legacy, new) == ["body.a", "body.b[2]", "body.c"]


def test_ignore_paths_with_wildcards_and_subtrees() -> None:
    legacy = {"meta": {"generatedAt": "x", "v": 1}, "items": [{"updatedAt": 1, "id": 1}]}
    new = {"meta": {"generatedAt": "y", "v": 1}, "items": [{"updatedAt": 2, "id": 1}]}
    assert paths(legacy, new, ignore=["body.meta.generatedAt", "body.items[*].updatedAt"]) == []
    assert paths(legacy, new, ignore=["body.meta"]) == ["body.items[0].updatedAt"]
    # a pattern is a whole segment: body.item does not ignore body.items
    assert ignore_pattern("body.item").match("body.items") is None
    assert ignore_pattern("body.*.v").match("body.meta.v") is not None


def test_uuid_and_timestamp_normalizers_fold_noise() -> None:
    legacy = {"id": "0b6f7a3e-8a42-4d5e-9d0a-1f2e3d4c5b6a", "at": "2026-12-02T10:00:00Z"}
    new = {"id": "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "at": "2026-12-02T10:00:00.123+00:00"}
    assert paths(legacy, new) == ["body.id", "body.at"]
    assert paths(legacy, new, normalize=["uuid", "iso_timestamp"]) == []
    # a different instant is still a difference
    moved = {**new, "at": "2026-12-02T10:00:01+00:00"}
    assert paths(legacy, moved, normalize=["uuid", "iso_timestamp"]) == ["body.at"]


def test_canonical_timestamp() -> None:
    assert canonical_timestamp("2026-12-02T11:00:00+01:00") == "2026-12-02T10:00:00Z"
    assert canonical_timestamp("2026-12-02 10:00:00.999Z") == "2026-12-02T10:00:00Z"
    assert canonical_timestamp("not a time") == "not a time"


def test_unordered_lists_float_tolerance_and_case_insensitive_keys() -> None:
    assert paths([3, 1, 2], [1, 2, 3]) != []
    shuffled = {"l": [3, 1, {"a": 2}]}, {"l": [{"a": 2}, 1, 3]}
    assert paths(*shuffled, normalize=["unordered_lists"]) == []
    assert paths({"x": 0.1 + 0.2}, {"x": 0.3}) == ["body.x"]
    assert paths({"x": 0.1 + 0.2}, {"x": 0.3}, normalize=["float_tolerance"]) == []
    assert paths({"x": 1.0}, {"x": 1.1}, normalize=["float_tolerance"]) == ["body.x"]
    legacy, new = {"created_at": 1, "user_id": 2}, {"createdAt": 1, "userId": 2}
    assert paths(legacy, new) == [
        "body.created_at",
        "body.user_id",
        "body.createdAt",
        "body.userId",
    ]
    assert paths(legacy, new, normalize=["case_insensitive_keys"]) == []


def test_status_equivalence_classes() -> None:
    r = rules(same_status=[[400, 422]])
    assert compare(answer({}, 422), answer({}, 400), r) == []
    fastapi = answer({"detail": [{"loc": ["body", "x"], "msg": "required"}]}, 422)
    nestjs = answer({"message": ["x is required"], "statusCode": 400}, 400)
    assert compare(fastapi, nestjs, r) == []  # each framework's error wording: not diffed
    assert [d.path for d in compare(answer({"a": 1}, 400), answer({"a": 2}, 400), r)] == [
        "body.a"
    ]
    assert [d.path for d in compare(answer({}, 422), answer({}, 500), r)] == ["status"]
    transitive = rules(same_status=[[400, 422], [422, 409]])
    assert compare(answer({}, 400), answer({}, 409), transitive) == []


def test_headers_compare_media_type_only_and_non_json_bodies_by_bytes() -> None:
    r = rules()
    json_utf8 = {"content-type": "application/json; charset=utf-8"}
    assert compare(answer({"a": 1}), answer({"a": 1}, headers=json_utf8), r) == []
    html = Observed(200, {"content-type": "text/html"}, b"<p>a</p>")
    other = Observed(200, {"content-type": "text/html"}, b"<p>b</p>")
    assert [d.path for d in compare(html, other, r)] == ["body"]
    assert [d.path for d in compare(html, answer({"a": 1}), r)] == [
        "headers.content-type",
        "body",
    ]


def test_the_number_of_differences_is_capped() -> None:
    legacy = {f"k{i}": i for i in range(500)}
    new = {f"k{i}": -i - 1 for i in range(500)}
    assert len(diff_json(legacy, new, DiffRules())) == 50


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(max_size=3), children, max_size=3),
                    max_leaves=20))  # fmt: skip
def test_a_value_never_differs_from_itself(value: object) -> None:
    loose = DiffRules(unordered_lists=True, case_insensitive_keys=True)
    assert diff_json(value, value, loose) == []


@pytest.mark.parametrize(
    ("legacy", "new"), [(True, 1), (False, 0), (None, 0), (None, ""), ("1", 1)]
)
def test_json_types_are_told_apart_at_any_depth(legacy: object, new: object) -> None:
    """Python's ``True == 1``: the differ must not take equal-looking values of two
    JSON types as equal, in an object, in a list, or at the top."""
    for shape in (lambda v: v, lambda v: {"a": {"b": v}}, lambda v: [0, [v]]):
        found = diff_json(shape(legacy), shape(new), DiffRules())
        assert len(found) == 1, (shape(legacy), shape(new))


def test_noise_model_applies_both_thresholds() -> None:
    model = NoiseModel(relative_threshold=0.2, absolute_threshold=0.0003)
    for index in range(100):  # within one backend, body.id differs every time
        model.record_within(["body.id"] + (["body.rare"] if index < 10 else []))
    for index in range(1000):
        # between backends: body.id as often as within (noise), body.rare far more often
        # (a real difference), body.price only between backends (never noise)
        model.record_between(["body.id", "body.rare"] + (["body.price"] if index < 5 else []))
    assert model.is_noise("body.id")
    assert not model.is_noise("body.rare")
    assert not model.is_noise("body.price")


@pytest.mark.parametrize("percent", [0, 10, 50, 100])
def test_sampling_is_deterministic_and_close_to_the_percent(percent: float) -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    first = [sampled(i, 1234, percent) for i in ids]
    assert first == [sampled(i, 1234, percent) for i in ids]
    share = sum(first) / len(ids) * 100
    assert abs(share - percent) < 1.5  # 20,000 draws: 3 standard deviations at 50 % is 1.06
