"""A visitor signs up in the browser and lands, signed in, on "New gallery"."""

from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.browser.conftest import BROWSER, screenshot

pytestmark = BROWSER


def test_a_visitor_signs_up_and_is_signed_in(page):
    page.goto("/")
    screenshot(page, "signup-0-home")
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()

    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password confirmation").fill("short")
    page.get_by_role("button", name="Create account").click()
    # Django's validators answer in the form, next to the field, and nothing is created.
    expect(page.locator(".field-error").first).to_contain_text("too short")
    assert not get_user_model().objects.filter(username="grace").exists()

    page.get_by_label("Password", exact=True).fill("correct horse battery 42")
    page.get_by_label("Password confirmation").fill("correct horse battery 42")
    page.get_by_role("button", name="Create account").click()

    expect(page).to_have_url("/g/new/")
    expect(page.locator(".msg-success")).to_contain_text("Welcome, grace")
    expect(page.locator(".who")).to_contain_text("grace")
    assert get_user_model().objects.get(username="grace").check_password("correct horse battery 42")
    screenshot(page, "signup-1-signed-in")
