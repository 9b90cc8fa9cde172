"""Cut an integration's secrets out of the text a task shows: its error and the log lines.

A backstop: task types never put credentials into their messages, but a client library or a
server may quote what it was sent. `secret_forms` lists every form a secret may take in such a
text, `redact` replaces them all with `***` in one pass.

The forms of a secret are the secret itself, its JSON-escaped, Python-escaped and
percent-encoded spellings, and its base64 (standard and URL-safe alphabets). Base64 is taken at
each of the three byte alignments, keeping only the characters that depend on the secret alone,
so a secret is found inside any longer base64 text that carries it (an SMTP server quoting an
AUTH PLAIN or AUTH LOGIN line). Providers add the composites their protocol builds
(`Provider.secret_values`: SMTP's `\\0user\\0password`).

Redaction must not become an oracle for guessing a secret: whoever sees a task's error may also
choose text that ends up in it (a run's input, an echoing server), and watch what is cut. So:

- only whole forms are cut, never a prefix, a suffix or any shorter piece of a secret: a guess
  is confirmed only when it is the entire secret, which is no faster than trying it against the
  provider itself, and an attempt costs a task run (throttled and quota-bound);
- a secret shorter than `MIN_SECRET_LENGTH` characters is not redacted in any form: cutting it
  would confirm guesses out of a search space small enough to walk, and would cut ordinary
  words out of every message. Such a secret is weak whatever Junction does (docs/security.md);
- matching is exact (case-sensitive), and every form is replaced by the same `***`, so the
  output does not say which form, or which secret, matched.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote

from integrations.providers import Provider

MIN_SECRET_LENGTH = 8
MASK = "***"


def _base64_cores(raw: bytes) -> list[str]:
    """Base64 of `raw` at each byte alignment, trimmed to the characters `raw` alone decides."""
    cores = []
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        first = -(-8 * pad // 6)  # the first character with no bit of the padding
        last = (8 * (pad + len(raw))) // 6  # past the last character with no bit of what follows
        core = encoded[first:last]
        cores.append(core)
        if pad == 0:
            cores.append(encoded)  # with its `=` padding, as a whole line shows it
    return cores


def _forms_of(value: str) -> set[str]:
    forms = {value, json.dumps(value)[1:-1], value.encode("unicode_escape").decode(), quote(value, safe="")}
    for core in _base64_cores(value.encode()):
        forms.add(core)
        forms.add(core.translate(str.maketrans("+/", "-_")))
    return forms


def secret_forms(credentials: dict[str, Any], provider: Provider) -> list[str]:
    """Every form of the integration's secrets that `redact` cuts, longest first."""
    secrets = [str(credentials[name]) for name in provider.secret_fields if credentials.get(name)]
    long_enough = [secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH]
    forms: set[str] = set()
    for value in provider.secret_values(credentials):
        # A composite (AUTH PLAIN) is cut only when a secret inside it would be cut on its own.
        if any(secret in value for secret in long_enough):
            forms |= _forms_of(value)
    return sorted(forms, key=len, reverse=True)


def redact(text: str, forms: list[str]) -> str:
    """Replace every occurrence of any of `forms` in `text` with `***` (one pass, longest first)."""
    if not forms or not text:
        return text
    pattern = re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))
    return pattern.sub(MASK, text)
