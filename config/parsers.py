"""The API's one request parser: JSON, bounded in size and in nesting depth.

DRF's JSONParser hands the body to `json.load`, which recurses once per level: a body nested
~1,000 levels raised RecursionError (a 500) on every route, and one nested a little less went
on to break whatever walked it later (validation, the database adapter, a worker). This parser
refuses more than JUNCTION_MAX_JSON_DEPTH levels with a 400 before any view sees the data, and
reads at most JUNCTION_MAX_REQUEST_BYTES even when no Content-Length announced the size.

The API speaks JSON only (SPEC §2): form and multipart parsers are not installed, so no other
parser can smuggle a nested JSON string past this one.
"""
from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]  # not in the stubs
from rest_framework.settings import api_settings
from rest_framework.utils.json import strict_constant

from config.errors import PayloadTooLarge
from config.jsonsize import JsonTooDeep, loads_bounded


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = get_encoding(parser_context)
        limit = settings.JUNCTION_MAX_REQUEST_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.",
                                  details={"body": [f"At most {limit} bytes."]})
        depth = settings.JUNCTION_MAX_JSON_DEPTH
        try:
            text = codecs.decode(raw, encoding)
            strict = {"parse_constant": strict_constant} if api_settings.STRICT_JSON else {}
            return loads_bounded(text, max_depth=depth, **strict)
        except JsonTooDeep:
            raise ParseError(
                f"JSON parse error - arrays and objects are nested deeper than the limit of {depth} levels.",
                code="json_too_deep",
            ) from None
        except ValueError as exc:  # malformed JSON, bad encoding, a number too long to convert
            raise ParseError(f"JSON parse error - {exc}") from None

