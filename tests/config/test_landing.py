"""The page at `/`: links to the admin and the API docs, and the demo's endpoint when it exists."""
from __future__ import annotations

from django.test import Client

from interactions.demo import DEMO_INTERACTION, DEMO_USERNAME
from tests.conftest import make_interaction, make_user


def test_root_links_the_admin_and_the_api_docs(db):
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/admin/"' in html and 'href="/api/docs/"' in html
    assert 'data-testid="landing-demo"' not in html


def test_root_links_the_demo_interaction_when_it_exists(db):
    demo = make_interaction(make_user(DEMO_USERNAME), name=DEMO_INTERACTION, active=True)
    html = Client().get("/").content.decode()
    assert f"POST http://testserver/api/interactions/{demo.pk}/run/" in html
    assert f'href="/api/interactions/{demo.pk}/endpoint/"' in html
    assert f'href="/admin/interactions/interaction/{demo.pk}/change/"' in html


def test_another_users_interaction_of_the_same_name_is_not_the_demo(db):
    make_interaction(make_user("mallory"), name=DEMO_INTERACTION)
    assert 'data-testid="landing-demo"' not in Client().get("/").content.decode()
