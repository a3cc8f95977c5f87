"""Hand-written SQL for the reads every search request makes: the only raw SQL in the app.

The ORM compiles a queryset into SQL anew on every evaluation, several times
the cost of the query itself on this path (docs/benchmarks.md, "HTTP"). The
few reads on that path are written here once, in SQL both PostgreSQL and
SQLite accept, and their rows become model instances through the backend's own
converters, exactly as the ORM would build them. Everything else uses the ORM.
This module also relies on two private parts of Django's database layer (the
PostgreSQL server-binding cursor and _prepare_cursor); gallery.checks warns
when Django is not the version they were written for.
"""

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, Generic, TypeAlias, TypeVar
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col
from django.urls import reverse

from gallery import access
from gallery.models import EmbeddingState, Gallery, Image, ModerationState, Session

# The Django release whose private cursor API _cursor() uses (gallery.checks).
DJANGO_VERSION = (5, 2)

# (pk, original_name, is_recent, is_new): a row of visible_candidates().
Candidate: TypeAlias = tuple[int, str, bool, bool]

# What these statements bind: ids, names, states, adapted timestamps; on PostgreSQL a list of ids.
_Param: TypeAlias = int | str | UUID | list[int] | None

_M = TypeVar("_M", bound=Model)


class _Select(Generic[_M]):
    """The columns of one model in a SELECT, and how to turn them into an instance."""

    def __init__(self, model: type[_M], alias: str, defer: Collection[str] = ()) -> None:
        self.model = model
        # A deferred field is loaded by its own query when first read, as with QuerySet.defer().
        self.fields: list[Field[Any, Any]] = [f for f in model._meta.concrete_fields if f.name not in defer]
        self.attnames = [f.attname for f in self.fields]
        q = connection.ops.quote_name
        self.sql = ", ".join(f"{alias}.{q(f.column)}" for f in self.fields)  # type: ignore[arg-type]  # a concrete field always has a column
        # (position, [converter], expression) as the ORM's compiler keeps them; a converter
        # takes (value, expression, connection) and returns the Python value.
        self.converters: list[tuple[int, list[Callable[..., Any]], Col]] = []
        for i, field in enumerate(self.fields):
            col = field.get_col(alias)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if found:
                self.converters.append((i, found, col))

    def instance(self, row: Sequence[Any], db: BaseDatabaseWrapper) -> _M:
        """Build the model instance from this model's slice of a row read through `db`."""
        values = list(row)
        for i, found, col in self.converters:
            value = values[i]
            for convert in found:
                value = convert(value, col, db)
            values[i] = value
        return self.model.from_db(db.alias, self.attnames, values)


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _db() -> BaseDatabaseWrapper:
    """The default connection itself. (`django.db.connection` is a proxy that looks
    the connection up again on every attribute: dozens of times per request here.)"""
    return connections[DEFAULT_DB_ALIAS]


def _cursor(db: BaseDatabaseWrapper) -> CursorWrapper:
    """A cursor for these statements, wrapped as Django wraps its own (errors, query log).

    On PostgreSQL it binds parameters on the server (Django's default cursor
    quotes each value into the SQL text in Python, most of the client's CPU for
    a short query) and reads rows in binary (timestamps are then parsed in C, not
    by Django's Python loader; they arrive in UTC all the same).
    """
    if db.vendor != "postgresql":
        return db.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor
    from psycopg.pq import Format

    db.close_if_health_check_failed()
    db.ensure_connection()
    # django-stubs declares ServerBindingCursor without its psycopg.Cursor base,
    # and leaves out the private _prepare_cursor.
    cursor = ServerBindingCursor(db.connection)  # type: ignore[call-arg]
    cursor.format = Format.BINARY  # type: ignore[attr-defined]
    with db.wrap_database_errors:
        return db._prepare_cursor(cursor)  # type: ignore[attr-defined]


def _fetch_one(db: BaseDatabaseWrapper, sql: str, params: Sequence[_Param]) -> tuple[Any, ...] | None:
    with _cursor(db) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@cache
def _image_query() -> tuple[str, _Select[Image], _Select[Gallery]]:
    image, gallery = _Select(Image, "i", defer=("embedding",)), _Select(Gallery, "g")
    sql = (
        f"SELECT {image.sql}, {gallery.sql} FROM {_table(Image)} i "
        f"JOIN {_table(Gallery)} g ON g.{_q('id')} = i.{_q('gallery_id')} WHERE i.{_q('id')} = %s"
    )
    return sql, image, gallery


def image_with_gallery(pk: int) -> Image | None:
    """Return the image with this pk, its gallery loaded (`image.gallery`), or None.

    One round trip instead of two; the gallery's current build comes with it as
    `current_index_id` (Gallery.current_build reads it from a per-process cache).
    The 2 KB embedding is deferred: "find similar" takes the vector from the
    index when it holds it (gallery.search.engine.similar_images).
    """
    sql, image_sel, gallery_sel = _image_query()
    db = _db()
    row = _fetch_one(db, sql, [pk])
    if row is None:
        return None
    image = image_sel.instance(row[: len(image_sel.fields)], db)
    gallery = gallery_sel.instance(row[len(image_sel.fields) :], db)
    Image._meta.get_field("gallery").set_cached_value(image, gallery)
    return image


def visible_candidates(
    *,
    gallery_id: int,
    embedding_version: str,
    pks: Sequence[int],
    recent_after: datetime,
    new_after: datetime,
    exclude_id: int | None,
    public_only: bool,
) -> list[Candidate]:
    """Return [(pk, original_name, is_recent, is_new)] of the gallery's searchable images
    among `pks`, plus every one embedded after `recent_after` (the delta candidates).

    Searchable: embedded with `embedding_version` and not rejected. With
    `public_only` (a viewer who neither owns the gallery nor is staff) only what
    such a viewer may see (gallery.access.public_images_sql).
    is_recent: embedded after `recent_after`; is_new: embedded after `new_after`.
    """
    db = _db()
    ids = [int(pk) for pk in pks]
    postgresql = db.vendor == "postgresql"
    sql, public_params = _candidates_query(
        db.vendor,
        0 if postgresql else len(ids),
        bool(ids),
        exclude_id is not None,
        public_only,
        settings.IMAGESEARCH_MODERATION,
    )
    adapt = db.ops.adapt_datetimefield_value
    recent_sql, new_sql = adapt(recent_after), adapt(new_after)
    params: list[_Param] = [
        recent_sql,
        new_sql,
        gallery_id,
        EmbeddingState.READY,
        ModerationState.REJECTED,
        embedding_version,
    ]
    if ids:
        # On PostgreSQL one array parameter: the same statement for any number of candidates.
        params += [ids] if postgresql else ids
    params.append(recent_sql)
    if exclude_id is not None:
        params.append(exclude_id)
    params += public_params
    with _cursor(db) as cursor:
        cursor.execute(sql, params)
        return [(pk, name, bool(recent), bool(new)) for pk, name, recent, new in cursor.fetchall()]


@lru_cache(maxsize=512)
def _candidates_query(
    vendor: str, n_listed: int, has_pks: bool, has_exclude: bool, public_only: bool, moderation: str
) -> tuple[str, tuple[str, ...]]:
    """The statement of visible_candidates, built once per shape, and the parameters of its visibility predicate.

    `moderation` is part of the shape: the predicate public_images_sql() renders depends on it.
    """
    where = [
        f"{_q('gallery_id')} = %s",
        f"{_q('embedding_state')} = %s",
        f"{_q('moderation_state')} <> %s",
        f"{_q('embedding_version')} = %s",
    ]
    match = f"{_q('embedded_at')} > %s"
    if has_pks:
        listed = "= ANY(%s)" if vendor == "postgresql" else f"IN ({', '.join(['%s'] * n_listed)})"
        match = f"({_q('id')} {listed} OR {match})"
    where.append(match)
    if has_exclude:
        where.append(f"{_q('id')} <> %s")
    public_params: list[str] = []
    if public_only:
        predicate, public_params = access.public_images_sql(_q)
        where.append(predicate)
    sql = (
        f"SELECT {_q('id')}, {_q('original_name')}, {_q('embedded_at')} > %s, {_q('embedded_at')} > %s "
        f"FROM {_table(Image)} WHERE {' AND '.join(where)}"
    )
    return sql, tuple(public_params)


class ResultImage:
    """What a result card shows of an image: its pk and name (and links built from the pk).

    Read along with the visibility check, so the page of results costs no
    further query; code that needs the whole row loads it by pk.
    """

    __slots__ = ("pk", "original_name", "gallery_id")

    def __init__(self, pk: int, original_name: str, gallery_id: int) -> None:
        self.pk, self.original_name, self.gallery_id = pk, original_name, gallery_id

    def get_absolute_url(self) -> str:
        return reverse("image_detail", kwargs={"pk": self.pk})

    def __repr__(self) -> str:
        return f"<ResultImage {self.pk} {self.original_name!r}>"


@cache
def _session_query() -> tuple[str, _Select[AbstractBaseUser]]:
    model: type[AbstractBaseUser] = get_user_model()
    user = _Select(model, "u")
    sql = (
        f"SELECT s.{_q('session_data')}, {user.sql} FROM {_table(Session)} s "
        f"LEFT JOIN {_table(model)} u ON u.{_q(model._meta.pk.column)} = s.{_q('user_id')} "  # type: ignore[arg-type]  # a primary key always has a column
        f"WHERE s.{_q('session_key')} = %s AND s.{_q('expire_date')} > %s"
    )
    return sql, user


def unexpired_session(session_key: str, now: datetime) -> tuple[str, AbstractBaseUser | None] | None:
    """Return (session_data, user) of the unexpired session with this key, or None.

    `user` is the user the row names (models.Session.user), or None when it
    names none or that user is gone.
    """
    sql, user_sel = _session_query()
    db = _db()
    row = _fetch_one(db, sql, [session_key, db.ops.adapt_datetimefield_value(now)])
    if row is None:
        return None
    return row[0], (user_sel.instance(row[1:], db) if row[1] is not None else None)


@cache
def _user_query() -> tuple[str, _Select[AbstractBaseUser]]:
    model: type[AbstractBaseUser] = get_user_model()
    sel = _Select(model, "u")
    return f"SELECT {sel.sql} FROM {_table(model)} u WHERE u.{_q(model._meta.pk.column)} = %s", sel  # type: ignore[arg-type]  # a primary key always has a column


def user_by_pk(pk: int | str | UUID) -> AbstractBaseUser | None:
    """Return the user with this primary key (already of the pk's type), or None."""
    sql, sel = _user_query()
    db = _db()
    row = _fetch_one(db, sql, [pk])
    return sel.instance(row, db) if row else None
