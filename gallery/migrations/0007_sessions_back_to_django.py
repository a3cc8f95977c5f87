import importlib

from django.db import migrations

_0006 = importlib.import_module("gallery.migrations.0006_session_with_user")


def copy_sessions_back(apps, schema_editor):
    """Carry the unexpired sessions back to Django's own table, which the cached_db engine reads,
    so an upgrade signs nobody out (sessions naming a backend no longer listed are re-encoded)."""
    from django.contrib.sessions.backends.db import SessionStore

    Old = apps.get_model("gallery", "Session")
    New = apps.get_model("sessions", "Session")
    store = SessionStore()  # decode() and encode() only
    # Django's table has not been written since 0006: what is left there is stale,
    # and would otherwise bring back sessions that were signed out meanwhile.
    New.objects.all().delete()

    def row(old):
        session_data, _user_id = _0006.current_backend_data(store, old.session_data)
        return New(session_key=old.session_key, session_data=session_data, expire_date=old.expire_date)

    _0006.copy_unexpired(Old, New, row)


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0006_session_with_user"),
        ("sessions", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(copy_sessions_back, _0006.copy_sessions),
        migrations.DeleteModel(name="Session"),
    ]
