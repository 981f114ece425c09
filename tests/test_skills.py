"""One vocabulary of skills: served, configurable, enforced on volunteers, matched by tags."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app import create_app
from app.config import TestConfig
from app.extensions import db
from app.models import Volunteer, VolunteerSkill
from app.skills import DEFAULT_SKILLS, Skill, Vocabulary, load_skills
from tests.factories import id_number, make_user, make_volunteer

# The contract's default list (API.md, Postings).
CONTRACT = {
    "elderly": "助老",
    "children": "关爱儿童",
    "disability": "助残",
    "medical": "医疗健康",
    "repair": "维修",
    "tutoring": "学业辅导",
    "legal": "法律咨询",
    "psychology": "心理疏导",
    "cleaning": "环境清洁",
    "digital": "手机电脑",
    "haircut": "理发",
    "driving": "驾驶",
    "first_aid": "急救",
    "translation": "翻译",
    "events": "活动组织",
}
REGISTRATION = {"real_name": "陈晓", "id_number": "330203199001011236", "district": "haishu"}


def test_the_vocabulary_is_public_and_one_page(client):
    resp = client.get("/api/v1/skills")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["next_cursor"] is None
    assert {item["code"]: item["name_zh"] for item in body["items"]} == CONTRACT
    assert all(set(item) == {"code", "name_zh", "name_en"} and item["name_en"] for item in body["items"])


def test_an_unknown_skill_is_refused_naming_it_and_nothing_is_written(app, client):
    user = make_user(app)
    resp = client.put(
        "/api/v1/me/volunteer", headers=user.headers, json={**REGISTRATION, "skills": ["elderly", "陪伴", "cooking"]}
    )
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"] == "validation_error"
    (message,) = body["errors"]["json"]["skills"]
    assert "陪伴, cooking" in message and "elderly" not in message
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Volunteer)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(VolunteerSkill)) == 0


def test_the_skills_index_follows_the_profile(app, client):
    account = make_volunteer(app, skills=["elderly", "repair"], home=(29.87, 121.55), push_radius_km=5)

    def index() -> set[tuple]:
        with app.app_context():
            rows = db.session.execute(
                sa.select(
                    VolunteerSkill.skill,
                    VolunteerSkill.home_lat,
                    VolunteerSkill.home_lng,
                    VolunteerSkill.push_radius_km,
                ).where(VolunteerSkill.user_id == account.id)
            )
            return set(rows.tuples())

    assert index() == {("elderly", 29.87, 121.55, 5.0), ("repair", 29.87, 121.55, 5.0)}
    resp = client.put(
        "/api/v1/me/volunteer",
        headers=account.headers,
        json={
            **REGISTRATION,
            "id_number": id_number(account.id + 100),  # the number make_volunteer registered
            "skills": ["repair", "driving"],
            "home": {"lat": 29.8, "lng": 121.6},
            "push_radius_km": 10,
        },
    )
    assert resp.status_code == 200, resp.get_json()
    assert index() == {("repair", 29.8, 121.6, 10.0), ("driving", 29.8, 121.6, 10.0)}


def test_tags_name_skills_by_code_or_either_name():
    vocabulary = Vocabulary(DEFAULT_SKILLS)
    assert vocabulary.codes_named_by(["助老", "Repairs", "driving", "陪伴", "elderly"]) == [
        "elderly",
        "repair",
        "driving",
    ]
    assert vocabulary.tags_naming(["haircut"]) == {"haircut": "haircut", "理发": "haircut", "Haircuts": "haircut"}
    assert vocabulary.unknown(["haircut", "Haircuts", "x"]) == ["Haircuts", "x"]


def test_an_operator_replaces_the_list_inline_or_from_a_file(tmp_path, client):
    skills = [{"code": "cooking", "name_zh": "烹饪", "name_en": "Cooking"}]
    assert load_skills(json.dumps(skills)).skills == (Skill("cooking", "烹饪", "Cooking"),)
    path = tmp_path / "skills.json"
    path.write_text(json.dumps(skills, ensure_ascii=False), encoding="utf-8")
    config = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    app = create_app({**config, "SKILLS": str(path), "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    body = app.test_client().get("/api/v1/skills").get_json()
    assert body == {"items": skills, "next_cursor": None}
    assert load_skills(None).skills == DEFAULT_SKILLS


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("[]", "empty"),
        ("{}", "JSON array"),
        ("[not json", "not valid JSON"),
        ("/nonexistent/skills.json", "readable file"),
        ('[{"code": "Cooking", "name_zh": "烹饪", "name_en": "Cooking"}]', "not a code"),
        ('[{"code": "cooking", "name_zh": "烹饪"}]', "missing"),
        ('[{"code": "cooking", "name_zh": "", "name_en": "Cooking"}]', "1-20 characters"),
        (
            '[{"code": "a", "name_zh": "同", "name_en": "A"}, {"code": "b", "name_zh": "同", "name_en": "B"}]',
            "names two skills",
        ),
    ],
)
def test_a_malformed_list_stops_the_app_at_start(value, complaint):
    config = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    with pytest.raises(ValueError, match=complaint):
        create_app({**config, "SKILLS": value, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
