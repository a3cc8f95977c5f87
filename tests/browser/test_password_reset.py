"""Password reset in the browser: from the login page's "Forgot password?" to the mail, its
link, a new password, and a sign-in with it; axe-core finds nothing serious on any step.

The live server runs in this process, so the mail Django sends lands in the test
environment's outbox (django.core.mail.outbox, the locmem backend the test setup installs).
"""

import re

from django.core import mail
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser.axe import assert_no_serious
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER

LINK = re.compile(r"https?://[^/\s]+(/accounts/reset/\S+/)")
NEW_PASSWORD = "a brand new passphrase 42"


def test_a_forgotten_password_is_reset_from_the_mailed_link(new_page, make_user):
    make_user("alice", email="alice@example.org")
    page = new_page()
    page.goto(reverse("login"))
    page.get_by_role("link", name="Forgot password?").click()
    expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
    assert_no_serious(page, "reset form")
    screenshot(page, "password-reset-1-form")

    page.get_by_label("Email").fill("alice@example.org")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    assert_no_serious(page, "reset sent")
    screenshot(page, "password-reset-2-sent")

    assert len(mail.outbox) == 1, [m.subject for m in mail.outbox]
    message = mail.outbox[0]
    assert message.to == ["alice@example.org"]
    assert '"alice"' in message.body
    link = LINK.search(message.body)
    assert link, message.body

    page.goto(link.group(1))  # Django swaps the token for a session key and redirects to .../set-password/
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert_no_serious(page, "choose a new password")
    screenshot(page, "password-reset-3-choose")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    assert_no_serious(page, "password changed")
    screenshot(page, "password-reset-4-done")

    # The old password no longer signs in; the new one does.
    page.goto(reverse("login"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert "/accounts/login/" in page.url
    assert_no_serious(page, "login refused")

    fresh = new_page()
    log_in(fresh, "alice", NEW_PASSWORD)
    expect(fresh.locator(".who")).to_contain_text("alice")
    screenshot(fresh, "password-reset-5-signed-in")

    # The link worked once.
    page.goto(link.group(1))
    expect(page.get_by_role("heading", name="This link no longer works")).to_be_visible()
    assert_no_serious(page, "used link")


def test_an_unknown_address_gets_the_same_page_and_no_mail(new_page, make_user):
    make_user("bob", email="bob@example.org")
    page = new_page()
    page.goto(reverse("password_reset"))
    page.get_by_label("Email").fill("nobody@example.org")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    assert mail.outbox == []
