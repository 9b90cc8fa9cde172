"""The built-in providers, registered by `IntegrationsConfig.ready()`."""
from __future__ import annotations

from integrations.providers import Provider
from integrations.smtp import Smtp
from integrations.twitter import Twitter

BUILTIN_PROVIDERS: list[type[Provider]] = [Twitter, Smtp]
