"""The ORM's model map: every installed model's table, columns and relations (with the
accessor names a developer writes in select_related()/prefetch_related()), as the
JSON object that `manage.py pgmedic_models` sends to pgmedic.  Format: README.md,
"Model map"; bump MODEL_MAP_VERSION on incompatible changes.
"""
import django
from django.apps import apps
from django.db import models

MODEL_MAP_VERSION = 1


def _label(model):
    return f"{model._meta.app_label}.{model._meta.object_name}"


def _field(f):
    return {
        "name": f.name,
        "column": f.column,
        "type": f.get_internal_type(),
        "null": bool(f.null),
        "unique": bool(f.unique),
        "db_index": bool(f.db_index),
        "primary_key": bool(f.primary_key),
    }


def _m2m_columns(field):
    """(through table, column to the declaring model, column to the target model,
    target columns on each side) of a ManyToManyField."""
    through = field.remote_field.through
    from_fk = through._meta.get_field(field.m2m_field_name())
    to_fk = through._meta.get_field(field.m2m_reverse_field_name())
    return {
        "through_model": _label(through),
        "through_table": through._meta.db_table,
        "through_auto_created": bool(through._meta.auto_created),
        "source_column": from_fk.column,
        "source_target_column": from_fk.target_field.column,
        "target_column": to_fk.column,
        "target_target_column": to_fk.target_field.column,
    }


def _forward(f):
    rel = {
        "kind": "forward_o2o" if f.one_to_one else "forward_fk",
        "name": f.name,
        "column": f.column,
        "to_model": _label(f.related_model),
        "to_table": f.related_model._meta.db_table,
        "to_column": f.target_field.column,
        "null": bool(f.null),
    }
    if f.one_to_one and f.remote_field.parent_link:
        rel["parent_link"] = True
    return rel


def _m2m(f):
    c = _m2m_columns(f)
    return {
        "kind": "m2m",
        "name": f.name,
        "to_model": _label(f.related_model),
        "to_table": f.related_model._meta.db_table,
        "through_model": c["through_model"],
        "through_table": c["through_table"],
        "through_auto_created": c["through_auto_created"],
        "through_from_column": c["source_column"],
        "through_to_column": c["target_column"],
        "from_column": c["source_target_column"],
        "to_column": c["target_target_column"],
    }


def _reverse(rel):
    """A reverse relation (ForeignObjectRel) seen from the model it points to."""
    f = rel.field
    name = rel.get_accessor_name()
    if isinstance(rel, models.ManyToManyRel):
        c = _m2m_columns(f)
        # From this side the declaring model is the one at the other end.
        return {
            "kind": "reverse_m2m",
            "name": name,
            "related_name": rel.related_name,
            "to_model": _label(rel.related_model),
            "to_table": rel.related_model._meta.db_table,
            "through_model": c["through_model"],
            "through_table": c["through_table"],
            "through_auto_created": c["through_auto_created"],
            "through_from_column": c["target_column"],
            "through_to_column": c["source_column"],
            "from_column": c["target_target_column"],
            "to_column": c["source_target_column"],
            "field": f.name,
        }
    return {
        "kind": "reverse_o2o" if rel.one_to_one else "reverse_fk",
        "name": name,
        "related_name": rel.related_name,
        "from_model": _label(rel.related_model),
        "from_table": rel.related_model._meta.db_table,
        "from_column": f.column,
        "to_table": f.target_field.model._meta.db_table,
        "to_column": f.target_field.column,
        "field": f.name,
    }


def _relations(model):
    opts = model._meta
    out = []
    for f in opts.local_concrete_fields:
        if f.is_relation and (f.many_to_one or f.one_to_one) and f.related_model is not None:
            out.append(_forward(f))
    for f in opts.local_many_to_many:
        out.append(_m2m(f))
    # related_objects: every relation pointing at this model, its parents' included
    # (multi-table inheritance: the accessor works on the child too), hidden ones
    # (related_name ending in '+', auto-created through tables) left out.
    for rel in opts.related_objects:
        if rel.is_hidden() or rel.get_accessor_name() is None:
            continue
        if not rel.many_to_many and not getattr(rel.field, "column", None):
            continue  # e.g. GenericRelation: no foreign key column of its own
        out.append(_reverse(rel))
    return out


def model_entry(model):
    opts = model._meta
    return {
        "app_label": opts.app_label,
        "model": opts.object_name,
        "label": _label(model),
        "table": opts.db_table,
        "pk": opts.pk.column,
        "managed": bool(opts.managed),
        "auto_created": bool(opts.auto_created),
        "fields": [_field(f) for f in opts.local_concrete_fields],
        "relations": _relations(model),
    }


def build_model_map():
    """The model map of every installed app: concrete models (proxies share their
    concrete model's table and are left out; unmanaged ones are in, managed=false;
    auto-created many-to-many tables are in, auto_created=true)."""
    entries = []
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy:
            continue
        entries.append(model_entry(model))
    entries.sort(key=lambda e: (e["app_label"], e["model"]))
    return {
        "version": MODEL_MAP_VERSION,
        "framework": "django:" + django.get_version(),
        "models": entries,
    }
