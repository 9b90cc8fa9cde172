"""Template tags of the canvas pages: `{% canvas_editor_config form original as config %}`."""
from __future__ import annotations

from typing import Any

from django import template

from interactions import admin_canvas

register = template.Library()


@register.simple_tag
def canvas_editor_config(form: Any, interaction: Any = None) -> dict[str, Any]:
    return admin_canvas.editor_config(form=form, interaction=interaction)


@register.simple_tag
def canvas_viewer_config(session: Any) -> dict[str, Any]:
    return admin_canvas.viewer_config(session=session)
