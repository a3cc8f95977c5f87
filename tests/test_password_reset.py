"""Password reset through Django's auth views, in the site's templates: the mail, the
link, a new password that signs in, and no hint of which addresses have accounts."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from tests.test_settings import clean_environment

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"https?://[^/\s]+(/accounts/reset/[^\s]+/)")


@pytest.fixture
def alice(make_user):
    return make_user("alice", email="alice@example.org")


def _request_reset(client, email):
    return client.post(reverse("password_reset"), {"email": email}, follow=True)


def test_the_login_page_links_to_the_reset_form(client):
    html = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("password_reset")}"' in html and "Forgot password?" in html
    form = client.get(reverse("password_reset"))
    assert form.status_code == 200
    assert b"Reset your password" in form.content and b'class="auth panel"' in form.content  # the site's style


def test_a_reset_mail_carries_a_link_that_sets_a_new_password(client, alice):
    response = _request_reset(client, "alice@example.org")
    assert response.redirect_chain[-1][0] == reverse("password_reset_done")
    assert b"Check your email" in response.content and b"60 minutes" in response.content
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.org"]
    assert message.subject == "Reset your imagesearch password"
    assert '"alice"' in message.body
    path = LINK.search(message.body).group(1)

    # The link redirects once to a URL without the token (Django hides it from the Referer).
    form_page = client.get(path, follow=True)
    assert b"Choose a new password" in form_page.content
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a-fresh-passphrase-9", "new_password2": "a-fresh-passphrase-9"},
        follow=True,
    )
    assert done.redirect_chain[-1][0] == reverse("password_reset_complete")
    assert b"Password changed" in done.content
    alice.refresh_from_db()
    assert alice.check_password("a-fresh-passphrase-9")
    assert client.login(username="alice", password="a-fresh-passphrase-9")

    # Used once: the same link now says so, and offers a new one.
    client.logout()
    again = client.get(path, follow=True)
    assert b"This link no longer works" in again.content
    assert reverse("password_reset").encode() in again.content


def test_an_unknown_address_gets_the_same_page_and_no_mail(client, alice):
    known = _request_reset(client, "alice@example.org")
    unknown = _request_reset(client, "nobody@example.org")
    assert unknown.redirect_chain == known.redirect_chain
    strip = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"')
    assert strip.sub(b"", unknown.content) == strip.sub(b"", known.content)
    assert len(mail.outbox) == 1  # only alice's


def test_a_tampered_link_is_refused(client, alice):
    _request_reset(client, "alice@example.org")
    path = LINK.search(mail.outbox[0].body).group(1)
    tampered = re.sub(r"/[^/]+/$", "/bad-token0000000000/", path)
    response = client.get(tampered, follow=True)
    assert b"This link no longer works" in response.content
    assert not get_user_model().objects.get(username="alice").check_password("x")


def test_signup_takes_an_optional_email_for_resets(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "newbie",
            "email": "newbie@example.org",
            "password1": "a-long-passphrase-7",
            "password2": "a-long-passphrase-7",
        },
    )
    assert response.status_code == 302
    assert get_user_model().objects.get(username="newbie").email == "newbie@example.org"


EMAIL_SHOW = (
    "import django, json; from django.conf import settings; django.setup(); "
    "print(json.dumps([settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, "
    "settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.DEFAULT_FROM_EMAIL]))"
)


def _email_settings(tmp_path, **env):
    proc = subprocess.run(
        [sys.executable, "-c", EMAIL_SHOW],
        cwd=ROOT,
        env=clean_environment(tmp_path, {"DJANGO_SECRET_KEY": "x", **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_email_goes_to_the_console_by_default_and_to_smtp_when_a_host_is_set(tmp_path):
    backend, host, *_ = _email_settings(tmp_path)
    assert backend == "django.core.mail.backends.console.EmailBackend" and host == ""
    smtp = _email_settings(
        tmp_path,
        EMAIL_HOST="smtp.example.org",
        EMAIL_PORT="2525",
        EMAIL_USE_TLS="0",
        EMAIL_HOST_USER="pictures",
        DEFAULT_FROM_EMAIL="Pictures <pictures@example.org>",
    )
    assert smtp == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.org",
        2525,
        False,
        "pictures",
        "Pictures <pictures@example.org>",
    ]
