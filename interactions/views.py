import json
import time

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, StreamingHttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, renderers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from accounts.authentication import ApiKeyAuthentication, RevocableJWTAuthentication, hot_path, reauthenticate
from accounts.enduser_auth import EndUserJWTAuthentication, IsEndUserOfApp, is_end_user
from accounts.models import ApiKey
from accounts.ownership import OwnedQuerysetMixin
from accounts.permissions import ApiKeyScope
from accounts.rate_limits import EventsThrottle, RetryThrottle, public_run_check
from accounts.throttling import PlanRateThrottle, plan_rate_check
from config.errors import Forbidden, InvalidInput
from interactions import event_stream, runstore, selectors, services, sessions
from interactions.compiled import compiled_version
from interactions.models import Interaction, Session
from interactions.statuses import SessionStatus, choices
from interactions.waiting import requested_wait, session_response
from config import listing
from config.listing import Ordering, Search, apply_filters
from config.openapi import errors
from interactions.serializers import (
    EndpointSerializer,
    InteractionInputSerializer,
    InteractionOutputSerializer,
    InteractionVersionSerializer,
    PlanSerializer,
    SessionSerializer,
)

# A run's body depends on the interaction's blanks: its exact JSON Schema is `GET …/endpoint/`'s `schema`.
RUN_INPUT = {
    "type": "object",
    "description": "The blanks' values by task and field. Required blanks must be given; optional "
    "ones may be left out (the field's default is used).",
    "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
    "additionalProperties": {"type": "object", "description": "{field: value} for one task's blanks."},
}
RUN_HEADERS = [
    OpenApiParameter("Location", str, OpenApiParameter.HEADER, response=[200, 202],
                     description="The session: `/api/sessions/{id}/`."),
    OpenApiParameter("Idempotent-Replayed", str, OpenApiParameter.HEADER, response=[200, 202], enum=["true"],
                     description="`true` when an earlier call with the same Idempotency-Key and body made this "
                     "session: nothing ran again. Absent on a new session."),
    OpenApiParameter("Preference-Applied", str, OpenApiParameter.HEADER, response=[200, 202],
                     description="`wait=N` when the call waited (Prefer: wait=N or ?wait=N)."),
]


class RunCallerPermission(BasePermission):
    """Who may reach the run route: builders (as everywhere, API key scopes included), end users
    and anonymous callers. Which interaction each may run is decided by the view."""

    def has_permission(self, request, view) -> bool:
        if request.user is None or is_end_user(request):
            return True
        return ApiKeyScope().has_permission(request, view)


# The run route's authentication: an end user's token, else the builder's JWT or API key (an
# end user's token is recognised without a query, so a builder's call costs what it did).
# The API's own (settings: JWT, API key, then the admin's session with CSRF, for the canvas's
# endpoint panel), after the end users' tokens.
RUN_AUTHENTICATION = [EndUserJWTAuthentication, RevocableJWTAuthentication, ApiKeyAuthentication, SessionAuthentication]
OPEN_TO_END_USERS = (Interaction.Access.END_USERS, Interaction.Access.PUBLIC)


class InteractionViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    serializer_class = InteractionOutputSerializer
    filterset_fields = ["is_active", "name"]
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["-created_at"]
    search_fields = ["name", "description"]
    # A `run` API key may only run (accounts.permissions); a limited one only its interactions.
    run_key_actions = ("run",)
    key_interaction_field = "id"

    def owned_queryset(self, user):
        found = selectors.interaction_list(user=user)
        if self.action == "run":  # the compiled version is cached per process: skip its JSON
            found = found.defer("current_version__tasks")
        return found

    def filter_queryset(self, queryset):
        # List parameters filter lists: an object is found by its id alone (and the run's hot path
        # is spared them). The versions list filters its own queryset (`versions`).
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def _render(self, interaction, code=status.HTTP_200_OK):
        return Response(self.get_serializer(interaction).data, status=code)

    @extend_schema(
        request=InteractionInputSerializer, responses={201: InteractionOutputSerializer},
        description="Create an interaction (inactive, version 1). The definition is validated: a 400 "
        "names every offending task and field (`tasks.<task>.body.<field>`, `tasks.<task>.execute_after`, "
        "`tasks` for a cycle).",
    )
    def create(self, request):
        data = InteractionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        interaction = services.interaction_create(user=request.user, **data.validated_data)
        return self._render(interaction, status.HTTP_201_CREATED)

    @extend_schema(
        request=InteractionInputSerializer, responses=InteractionOutputSerializer,
        description="Replace the definition. A change to `tasks` makes a new version; sessions already "
        "running keep theirs.",
    )
    def update(self, request, pk=None, partial=False):
        interaction = self.get_object()
        data = InteractionInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        interaction = services.interaction_update(interaction=interaction, **data.validated_data)
        return self._render(interaction)

    @extend_schema(
        request=InteractionInputSerializer, responses=InteractionOutputSerializer,
        description="Change some fields; those left out keep their value. A change to `tasks` makes a "
        "new version.",
    )
    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    @extend_schema(description="Delete the interaction, its versions and its sessions (running ones are cancelled).")
    def destroy(self, request, pk=None):
        return super().destroy(request, pk=pk)

    def perform_destroy(self, instance):
        services.interaction_delete(interaction=instance)

    @extend_schema(request=None, responses=InteractionOutputSerializer,
                   description="Activate the interaction: its endpoint accepts runs.")
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        return self._render(services.interaction_set_active(interaction=self.get_object(), active=True))

    @extend_schema(request=None, responses=InteractionOutputSerializer,
                   description="Deactivate the interaction: runs are refused (409); running sessions go on.")
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        return self._render(services.interaction_set_active(interaction=self.get_object(), active=False))

    @extend_schema(responses=InteractionVersionSerializer(many=True),
                   description="The interaction's versions, newest first: each change to `tasks` made one.")
    @action(detail=True, methods=["get"], filter_backends=[Ordering, Search],
            ordering_fields={"version": "number", "created_at": "created_at"}, ordering=["-version"],
            search_fields=["tasks"])
    def versions(self, request, pk=None):
        versions = apply_filters(self, selectors.version_list(interaction=self.get_object()))
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(InteractionVersionSerializer(page, many=True).data)

    @extend_schema(responses=EndpointSerializer,
                   description="How to call the interaction: the example body (built from its blanks, "
                   "valid as shown), the body's JSON Schema and a ready curl command.")
    @action(detail=True, methods=["get"])
    def endpoint(self, request, pk=None):
        interaction = self.get_object()
        run_url = request.build_absolute_uri(f"/api/interactions/{interaction.id}/run/")
        login_url = request.build_absolute_uri(f"/api/apps/{interaction.app.slug}/auth/login/") if interaction.app else None
        return Response(selectors.interaction_endpoint(interaction=interaction, run_url=run_url, login_url=login_url))

    @extend_schema(responses={200: PlanSerializer},
                   description="The compiled Celery canvas of the current version, e.g. "
                   "`chain(fetch, group(tweet, alert))`, with the waits it adds beyond the DAG.")
    @action(detail=True, methods=["get"])
    def plan(self, request, pk=None):
        version = self.get_object().current_version
        compiled = compiled_version(version.id, version.tasks)
        plan = compiled.plan
        return Response({
            "version": version.number,
            "canvas": plan.render(),
            "extra_waits": [{"task": task, "waits_for": other} for task, other in plan.extra_waits],
            "celery": compiled.worker_plan.render() if compiled.worker_plan else None,
            "fused": [
                {"task": name, "after": sorted(compiled.definition.tasks[name].execute_after),
                 "runs_in": compiled.runs_in(name)}
                for name in compiled.order if name in compiled.fused
            ],
            "chain_links": [{"task": compiled.follows[name], "in_step_of": name}
                            for name in compiled.order if name in compiled.follows],
        })

    @extend_schema(
        request={"application/json": RUN_INPUT},
        parameters=[
            OpenApiParameter("Prefer", str, OpenApiParameter.HEADER,
                             description="`wait=N`: answer when the session ends, or after N seconds "
                             "(at most JUNCTION_MAX_WAIT)."),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                             description="Within 24 h, a repeat with the same key and body returns the same "
                             "session (with `Idempotent-Replayed: true`) and runs nothing; another body is 422."),
            OpenApiParameter("wait", float, OpenApiParameter.QUERY, description="Alias of `Prefer: wait=N`."),
            *RUN_HEADERS,
        ],
        responses={
            200: OpenApiResponse(SessionSerializer, description="Waited for and finished: the session. An "
                                 "interaction whose `response` task ran answers with that task's status, "
                                 "headers and body instead."),
            202: OpenApiResponse(SessionSerializer, description="Accepted: the session, still running (or not "
                                 "waited for)."),
            **errors(
                (400, "`validation_error`: a blank missing, unknown or of the wrong type, or a task that does "
                 "not exist or has no blanks, named in `details` (`<task>.<field>`, `<task>`)."),
                (401, "No credentials (the interaction is not public), or an end user's token of another app or "
                 "for an interaction not open to end users."),
                (403, "`group_not_allowed`: the end user's group is not in `allowed_groups`."),
                (409, "`interaction_inactive`: activate the interaction first."),
                422,
                (429, "`throttled` (the plan's run rate; JUNCTION_THROTTLE_PUBLIC_RUN per address when public) or "
                 "`too_many_active_sessions` (JUNCTION_MAX_ACTIVE_SESSIONS queued or running), with Retry-After."),
            ),
        },
        description="Run the interaction with the caller's values for its blanks: "
        "`{\"<task>\": {\"<field>\": value}}` (GET `…/endpoint/` shows the example body and its JSON Schema). "
        "Who may call depends on its `access` (docs/end-users.md): the owner "
        "(JWT or API key; also API keys of scope `run`, a limited key only its interactions, others are 404); "
        "with `end_users`, an end user of its app (`Authorization: Bearer <end user's access token>`; 403 "
        "`group_not_allowed` outside `allowed_groups`, 401 for another app's token); with `public`, anyone "
        "without credentials (429 past JUNCTION_THROTTLE_PUBLIC_RUN per address; no Idempotency-Key).",
    )
    @action(detail=True, methods=["post"], throttle_classes=[PlanRateThrottle],
            authentication_classes=RUN_AUTHENTICATION, permission_classes=[RunCallerPermission])
    def run(self, request, pk=None):
        # A bad `Prefer`/`?wait` is refused before anything is created.
        wait = requested_wait(request.headers.get("Prefer"), request.query_params.get("wait"))
        end_user, sessions_path = None, "/api/sessions/"
        if request.user is None:
            interaction = self._public_interaction(request, pk)
            owner, sessions_path = interaction.user, None
        elif is_end_user(request):
            end_user = request.user
            interaction = self._end_user_interaction(end_user, pk)
            owner, sessions_path = end_user.app.owner, f"/api/apps/{end_user.app.slug}/sessions/"
        else:
            # A builder's call, the fast way: the caller and the interaction as this process's
            # caches know them (config/hotcache.py), checked in the round trip that writes the
            # session. Whatever would refuse the call, or a check that fails, is decided again
            # from the database.
            if hot_path(request) and not request.headers.get("Idempotency-Key"):
                interaction = selectors.interaction_for_run(pk=pk, user=request.user)
                if interaction is not None and interaction.is_active:
                    self.check_object_permissions(request, interaction)
                    try:
                        return self._start(request, interaction, wait, owner=request.user,
                                           expected=_expected(request, interaction))
                    except runstore.StaleRead:
                        pass
                reauthenticate(request)
                self.check_permissions(request)
                self.check_throttles(request)  # by the plan the database holds
            try:
                interaction, owner = self.get_object(), request.user
            except Http404:  # not theirs: anyone may still run a public interaction
                interaction = self._public_interaction(request, pk, not_found=True)
                owner, sessions_path = interaction.user, None
        return self._start(request, interaction, wait, owner=owner, end_user=end_user, sessions_path=sessions_path)

    def _start(self, request, interaction, wait, *, owner, end_user=None, sessions_path="/api/sessions/",
               expected=None):
        # A caller waiting on the server's event loop lets the call hold the session's timers
        # (interactions/holding.py).
        hold_until = time.time() + wait if wait and getattr(request, "waits_on_event_loop", False) else None
        session, created = sessions.session_start(
            user=owner, interaction=interaction, data=request.data, end_user=end_user,
            idempotency_key=request.headers.get("Idempotency-Key") or None, expected=expected,
            hold_until=hold_until,
        )
        return session_response(session, wait, sessions_path=sessions_path, replayed=not created,
                                held=getattr(session, "held_timers", None) if created else None)

    def _end_user_interaction(self, end_user, pk) -> Interaction:
        """The interaction an end user may run (one query): 401 when it is not open to end users
        or belongs to another app, 403 when their group is not admitted."""
        interaction = selectors.interaction_to_run(pk=pk, access=OPEN_TO_END_USERS)
        if interaction is None:
            raise AuthenticationFailed("This interaction cannot be run with an end user's token.",
                                       code="not_open_to_end_users")
        if interaction.app_id != end_user.app_id:
            raise AuthenticationFailed("This token belongs to another app.", code="wrong_app")
        allowed = interaction.allowed_groups
        if interaction.access == Interaction.Access.END_USERS and allowed and end_user.group.name not in allowed:
            raise Forbidden("Your group may not run this interaction.", code="group_not_allowed",
                           details={"group": [end_user.group.name], "allowed_groups": list(allowed)})
        return interaction

    def _public_interaction(self, request, pk, not_found: bool = False) -> Interaction:
        """A public interaction for a caller who is not its builder nor an end user (one query),
        counted against the address's and the owner's rates; 401 (404 for a builder) otherwise."""
        interaction = selectors.interaction_to_run(pk=pk, access=(Interaction.Access.PUBLIC,))
        if interaction is None:
            if not_found:
                raise Http404
            raise NotAuthenticated()
        if request.headers.get("Idempotency-Key"):
            raise InvalidInput("An anonymous call cannot use an Idempotency-Key: nothing tells its callers apart.",
                           code="validation_error",
                           details={"Idempotency-Key": ["Not accepted on anonymous calls of a public interaction."]})
        public_run_check(request)
        plan_rate_check(interaction.user)
        return interaction


class SessionFilter(listing.FilterSet):
    interaction = listing.UUIDFilter(field_name="interaction_id")
    end_user = listing.UUIDFilter(field_name="end_user_id")
    status = filters.MultipleChoiceFilter(choices=choices(SessionStatus))
    created_after = listing.DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = listing.DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Session
        fields = ["interaction", "end_user", "status", "created_after", "created_before"]


# One Server-Sent Event, as a client's parser reads it (the schema applies to each event of the stream).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Resume after this event with `Last-Event-ID`."},
        "event": {"type": "string", "description": "`task` (a task's record and `name`) or `session` (the last)."},
        "data": {"type": "string", "contentMediaType": "application/json", "description": "The record, as JSON."},
    },
    "required": ["data"],
}


class EventStreamRenderer(renderers.BaseRenderer):
    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode()


class SessionViewSet(OwnedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SessionSerializer
    filterset_class = SessionFilter
    ordering_fields = {"created_at": "created_at", "started_at": "started_at", "finished_at": "finished_at",
                       "status": "status", "interaction": "interaction__name"}
    ordering = ["-created_at"]
    search_fields = ["interaction__name", "error"]
    # A `run` API key reads the sessions of the interactions it may run; cancel and retry need a
    # full key (accounts.permissions, docs/security.md).
    run_key_actions = ("list", "retrieve", "events")
    key_interaction_field = "interaction_id"

    def owned_queryset(self, user):
        return selectors.session_list(user=user)

    def finalize_response(self, request, response, *args, **kwargs):
        # An event stream is never rendered by DRF: what is rendered for `events` is an error,
        # in the error shape as JSON whatever the client accepts.
        if isinstance(getattr(request, "accepted_renderer", None), EventStreamRenderer):
            request.accepted_renderer, request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([selectors.session_data(s) for s in page])

    def retrieve(self, request, pk=None):
        return Response(selectors.session_data(self.get_object()))

    @extend_schema(request=None, responses={200: SessionSerializer, **errors(
        (409, "`session_finished`: the session has already ended."))},
        description="Cancel the session: running tasks are stopped, pending ones never start.")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return Response(selectors.session_data(sessions.session_cancel(session=self.get_object())))

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("Location", str, OpenApiParameter.HEADER, response=[202],
                                     description="The new session: `/api/sessions/{id}/`.")],
        responses={202: SessionSerializer, **errors(
            (409, "`interaction_inactive`: the interaction was deactivated."),
            (429, "`throttled` (JUNCTION_THROTTLE_RETRY) or `too_many_active_sessions`, with Retry-After."))},
        description="Start a new session of the same version and input that reuses the outputs of the "
        "tasks that completed and runs the rest.",
    )
    @action(detail=True, methods=["post"], throttle_classes=[RetryThrottle])
    def retry(self, request, pk=None):
        retry = sessions.session_retry(session=self.get_object())
        retry = selectors.session_list(user=request.user).get(pk=retry.pk)
        return Response(selectors.session_data(retry), status=status.HTTP_202_ACCEPTED,
                        headers={"Location": f"/api/sessions/{retry.id}/"})

    @extend_schema(
        parameters=[
            OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER,
                             description="resume after this event (its `id:`)"),
            OpenApiParameter("last_event_id", str, OpenApiParameter.QUERY, description="alias of Last-Event-ID"),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT, description="Server-Sent Events: `task` events "
                                                        "(a task's record and `name`), then one `session` event."),
            204: OpenApiResponse(description="The stream already ended (Last-Event-ID of the `session` event)."),
            **errors((429, "`throttled`: streams opened per user (JUNCTION_THROTTLE_EVENTS), with Retry-After.")),
        },
        description="Stream the session's task changes as Server-Sent Events, then the session; resumable "
        "with Last-Event-ID.",
    )
    @action(detail=True, methods=["get"], renderer_classes=[renderers.JSONRenderer, EventStreamRenderer],
            throttle_classes=[EventsThrottle])
    def events(self, request, pk=None):
        """Stream the session's task changes, then the session (Server-Sent Events; see event_stream)."""
        session = self.get_object()
        seen = event_stream.Seen.parse(
            request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id")
        )
        if seen is not None and seen.ended and session.is_finished:
            return Response(status=status.HTTP_204_NO_CONTENT)  # tells an EventSource to stop
        if isinstance(request._request, ASGIRequest):
            # Under config/asgi.py the stream is consumed on the event loop: no thread held.
            stream = event_stream.session_stream(
                session_id=session.pk, seen=seen, read=lambda: sync_to_async(_session_data)(session.pk),
            )
        else:
            # A WSGI thread (or the test client) drives the stream itself.
            stream = event_stream.blocking(session_id=session.pk, seen=seen, read=lambda: _session_data(session.pk))
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


def _expected(request, interaction) -> runstore.Expected:
    user = request.user
    return runstore.Expected(
        user_id=user.pk, token_version=user.token_version, plan=user.plan, interaction_id=interaction.pk,
        version_id=interaction.current_version_id, deadline_seconds=interaction.deadline_seconds,
        api_key_id=request.auth.pk if isinstance(request.auth, ApiKey) else None,
    )


def _session_data(session_id) -> dict:
    return selectors.session_data(selectors.session_by_id(session_id=session_id))


class EndUserSessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """An end user's own sessions of their app (`/api/apps/{slug}/sessions/`); anything else is 404."""

    serializer_class = SessionSerializer
    filterset_class = SessionFilter
    ordering_fields = SessionViewSet.ordering_fields
    ordering = SessionViewSet.ordering
    search_fields = SessionViewSet.search_fields
    authentication_classes = [EndUserJWTAuthentication]
    permission_classes = [IsEndUserOfApp]

    def get_queryset(self):
        return selectors.end_user_session_list(end_user=self.request.user)

    def list(self, request, slug=None):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([selectors.session_data(s) for s in page])

    def retrieve(self, request, slug=None, pk=None):
        return Response(selectors.session_data(self.get_object()))
