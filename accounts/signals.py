"""Announce changes to users and API keys to the run path's caches (config/hotcache.py)."""
from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiKey, User
from config.hotcache import invalidate

USERS = "users"
API_KEYS = "api_keys"


def user_changed(user_id) -> None:
    """A user row changed (password, activation, token version, plan…), or went away."""
    invalidate(USERS, str(user_id))
    invalidate(API_KEYS)  # cached keys carry their user: drop them all (a rare event)


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _user_saved(sender, instance: User, **kwargs) -> None:
    user_changed(instance.pk)


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def _api_key_saved(sender, instance: ApiKey, **kwargs) -> None:
    if kwargs.get("update_fields") == frozenset({"last_used_at"}):
        return
    invalidate(API_KEYS, instance.hashed_key)
