"""Announce changes to interactions to the run path's cache (config/hotcache.py)."""
from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from config.hotcache import invalidate
from interactions.models import Interaction

INTERACTIONS = "interactions"


@receiver(post_save, sender=Interaction)
@receiver(post_delete, sender=Interaction)
def _interaction_saved(sender, instance: Interaction, **kwargs) -> None:
    """Activation, a new current version, a new deadline, a deletion…"""
    invalidate(INTERACTIONS, str(instance.pk))
