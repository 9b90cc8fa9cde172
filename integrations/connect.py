"""Connect an account through a provider app: the two halves of the OAuth 1.0a dance.

`start_connect` asks the provider for a request token and records an `OAuthState` (a random
state, the provider app, who started — the builder, or one of their app's end users — the
request token); the account owner authorizes at the provider, which sends their browser to the
callback with the state, the request token and a verifier; `finish_connect` spends the state
once, exchanges the verifier for the account's access token and creates (or, for an account
that starter already connected through that app, refreshes) an integration owned by whoever
started. The protocol itself is the provider's (`Provider.authorization` / `Provider.access`,
tweepy's `OAuth1UserHandler` for Twitter); this module keeps the state. Decisions: docs/providers.md.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import EndUser, User
from config.errors import Conflict, DomainError, InvalidInput, Unavailable
from integrations.encryption import DecryptionError, decrypt_json, encrypt_json
from integrations.models import Integration, OAuthState, ProviderApp
from integrations.providers import ClientUnavailable, Provider, providers
from integrations.redaction import redact, secret_forms
from integrations.services import provider_app_credentials, split_credentials

# SPEC §2.7: a state older than this is refused. Long enough to log in at the provider.
STATE_LIFETIME = timedelta(minutes=10)
# The provider's token calls are made on the request's path: answer or give up quickly.
EXCHANGE_TIMEOUT = 10.0


@dataclass(frozen=True)
class ConnectStarted:
    """Where to send the account owner, and the state the callback will present."""

    authorize_url: str
    state: str


def start_connect(
    *, provider_app: ProviderApp, builder: User, callback: str, end_user: EndUser | None = None
) -> ConnectStarted:
    """Start connecting an account through `provider_app`; the integration will be `builder`'s,
    or, with `end_user` (an end user of one of `builder`'s apps), that end user's.

    `callback` is the absolute URL of the OAuth callback route; the state is added to it. The
    caller has checked that `provider_app` and the end user's app are `builder`'s.
    Raises Conflict (409) `secrets_unreadable` when the app's secrets cannot be decrypted, 400
    `provider_refused` when the provider refuses the app's credentials, 503 when it cannot be
    reached.
    """
    spec = providers.get(provider_app.provider)
    credentials = _app_credentials(provider_app)
    state = secrets.token_urlsafe(32)
    separator = "&" if "?" in callback else "?"
    try:
        authorization = spec.authorization(credentials, callback=f"{callback}{separator}state={state}",
                                           timeout=EXCHANGE_TIMEOUT)
    except ClientUnavailable as exc:
        raise _provider_error(exc, spec, credentials) from None
    OAuthState.objects.filter(created_at__lt=timezone.now() - STATE_LIFETIME).delete()
    OAuthState.objects.create(
        state_digest=_digest(state), provider_app=provider_app, user=builder, end_user=end_user,
        request_token=authorization.request_token,
        request_token_secret_encrypted=encrypt_json({"secret": authorization.request_token_secret}),
    )
    return ConnectStarted(authorize_url=authorization.authorize_url, state=state)


def finish_connect(*, state: str, token: str, verifier: str) -> Integration:
    """Spend `state`, exchange the verifier for the account's access token, save the integration.

    The state is spent by the first callback that presents it, whatever happens next: a second
    one is refused, so the verifier can be tried once. Raises InvalidInput (400) `oauth_state_invalid`
    (unknown), `oauth_state_used`, `oauth_state_expired` (older than STATE_LIFETIME),
    `oauth_token_mismatch` (not the request token of this state), `provider_refused`; 503 when
    the provider cannot be reached.
    """
    row = _spend(state)
    if timezone.now() - row.created_at > STATE_LIFETIME:
        raise _state_error("oauth_state_expired", "This connection attempt is older than "
                           f"{int(STATE_LIFETIME.total_seconds() // 60)} minutes: start again.")
    if not hmac.compare_digest(row.request_token.encode(), token.encode()):
        raise _state_error("oauth_token_mismatch", "The oauth_token is not the one this connection attempt obtained.")
    if row.end_user is not None and not row.end_user.is_active:
        # Disabled since the dance started: their tokens no longer work, nor does this.
        raise _state_error("oauth_state_invalid", "The account that started this connection attempt is disabled.")
    provider_app = row.provider_app
    spec = providers.get(provider_app.provider)
    credentials = _app_credentials(provider_app)
    try:
        request_token_secret = decrypt_json(row.request_token_secret_encrypted)["secret"]
    except DecryptionError:
        raise _state_error("oauth_state_invalid", "This connection attempt cannot be read any more: start again.") from None
    try:
        connected = spec.access(credentials, request_token=row.request_token, request_token_secret=request_token_secret,
                                verifier=verifier, timeout=EXCHANGE_TIMEOUT)
    except ClientUnavailable as exc:
        raise _provider_error(exc, spec, credentials) from None
    return _save_connected(owner=row.user, end_user=row.end_user, provider_app=provider_app,
                           account=connected.account, credentials=connected.credentials, spec=spec)


def decline_connect(*, state: str) -> None:
    """The account owner declined at the provider (`?denied=`): spend the state.

    Always raises: InvalidInput (400) `oauth_denied`, or the state's own error when it is not open.
    """
    _spend(state)
    raise InvalidInput("The account owner did not authorize the app: nothing was connected.", code="oauth_denied")


def _spend(state: str) -> OAuthState:
    """Mark the state used (committed before anything else happens); return it."""
    with transaction.atomic():
        row = (OAuthState.objects.select_for_update(of=("self",)).select_related("provider_app", "user", "end_user")
               .filter(state_digest=_digest(state)).first())
        if row is None:
            raise _state_error("oauth_state_invalid", "Unknown state: this connection attempt was not started here.")
        if row.used_at is not None:
            raise _state_error("oauth_state_used", "This connection attempt has already been completed or refused.")
        row.used_at = timezone.now()
        row.save(update_fields=["used_at", "updated_at"])
    return row


@transaction.atomic
def _save_connected(
    *, owner: User, end_user: EndUser | None, provider_app: ProviderApp, account: str, credentials: dict,
    spec: Provider,
) -> Integration:
    """Create the integration, or refresh the tokens of the one this account already has
    through this app for the same starter (connecting again is how an account owner renews access).

    The starter is `owner` (the builder) alone, or with `end_user` one of their app's end users:
    each starter has their own integration of an account, so two end users who connect the same
    account never share one, nor an end user and the builder. Names are unique per builder among
    their own, per end user among theirs.
    """
    public, secret = split_credentials(spec, credentials)
    existing = None
    if account:
        # `end_user=None` is the builder's own (IS NULL).
        existing = (Integration.objects.select_for_update()
                    .filter(user=owner, end_user=end_user, provider_app=provider_app, account=account).first())
    if existing is not None:
        existing.config, existing.secrets_encrypted = public, encrypt_json(secret)
        existing.save(update_fields=["config", "secrets_encrypted", "updated_at"])
        return existing
    base = f"{provider_app.name} {account}".strip()[:90]
    for attempt in range(1, 100):
        name = base if attempt == 1 else f"{base} ({attempt})"
        try:
            with transaction.atomic():
                return Integration.objects.create(
                    user=owner, end_user=end_user, name=name, provider=provider_app.provider, provider_app=provider_app,
                    account=account, config=public, secrets_encrypted=encrypt_json(secret),
                )
        except IntegrityError:
            continue  # the name is taken: try the next
    raise Conflict("Too many integrations share this name: rename some.", code="conflict")


def _app_credentials(provider_app: ProviderApp) -> dict:
    try:
        return provider_app_credentials(provider_app=provider_app)
    except DecryptionError:
        raise Conflict(
            "The provider app's secrets cannot be decrypted with the server's keys: send them again "
            "(PATCH /api/provider-apps/{id}/).", code="secrets_unreadable",
        ) from None


def _provider_error(exc: ClientUnavailable, spec: Provider, credentials: dict) -> DomainError:
    # The message never quotes a credential; the redaction is a backstop, as for task errors.
    message = redact(str(exc), secret_forms(credentials, spec))
    if exc.transient:
        return Unavailable(message, code="service_unavailable")
    return InvalidInput(message, code="provider_refused")


def _state_error(code: str, message: str) -> DomainError:
    return InvalidInput(message, code=code, details={"state": [message]} if code.startswith("oauth_state") else {})


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()
