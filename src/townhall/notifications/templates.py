"""Notification templates: Jinja2 in its sandbox, per channel and locale, from files.

A template is a folder under `templates/` (or under the override directory, which wins), with
files named `<channel>.<locale>.<part>`: `subject.txt`, `txt` (the plain body) and, for email,
`html`. A locale falls back to its language (`fr-CA` -> `fr`) and then to the default locale.
For one template, channel and locale, an override's files replace the shipped ones as a set.
Only `.html` files are autoescaped. A variable the data lacks raises `MissingTemplateVariable`
naming it, so a request is refused up front instead of sending a blank message. Data values are
scalars; `as_text` says how each kind is printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, PrefixLoader, StrictUndefined, Template, TemplateNotFound
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from townhall.notifications.domain import (
    Channel,
    MissingTemplateVariable,
    TemplateError,
    UnknownTemplate,
)

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?")


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str
    html: str | None = None


class _MissingVariable(UndefinedError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is undefined")
        self.name = name


class _NamingUndefined(StrictUndefined):
    """StrictUndefined whose error carries the missing variable's name, not just a message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc", _MissingVariable)  # the sandbox passes its SecurityError
        super().__init__(*args, **kwargs)

    @property
    def _undefined_message(self) -> str:
        if self._undefined_exception is _MissingVariable:
            return str(self._undefined_name or "?")
        return str(self._undefined_hint or self._undefined_name)


def as_text(value: Any) -> Any:
    """How an expression's value is printed: None as nothing, booleans as `true` / `false`
    (as JSON writes them), numbers and strings as they are (`3`, `2.5`, `1e+100`). Data
    values are scalars (`domain.check_template_data`), so no Python repr reaches a message."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _autoescape(name: str | None) -> bool:
    return bool(name and name.endswith(".html"))


class TemplateRenderer:
    def __init__(self, override_dir: Path | None = None, *, default_locale: str = "en") -> None:
        roots = {"builtin": FileSystemLoader(BUILTIN_TEMPLATES)}
        if override_dir is not None:
            roots = {"override": FileSystemLoader(override_dir), **roots}
        self._roots = list(roots)
        self.default_locale = default_locale
        self._env = SandboxedEnvironment(
            loader=PrefixLoader(roots),
            undefined=_NamingUndefined,
            autoescape=_autoescape,
            finalize=as_text,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _locales(self, locale: str | None) -> list[str]:
        candidates: list[str] = []
        if locale and _LOCALE.fullmatch(locale):
            candidates += [locale.replace("_", "-"), re.split("[-_]", locale)[0].lower()]
        candidates.append(self.default_locale)
        return list(dict.fromkeys(candidates))

    def _load(self, name: str) -> Template | None:
        try:
            return self._env.get_template(name)
        except TemplateNotFound:
            return None

    def has(self, template: str, channel: Channel) -> bool:
        try:
            self._pick(template, channel, None)
        except UnknownTemplate:
            return False
        return True

    def _pick(
        self, template: str, channel: Channel, locale: str | None
    ) -> tuple[Template | None, Template | None, Template | None]:
        if not _NAME.fullmatch(template):
            raise UnknownTemplate(template, channel)
        for candidate in self._locales(locale):
            for root in self._roots:  # the override's files replace the shipped ones as a set
                stem = f"{root}/{template}/{channel.value}.{candidate}"
                text = self._load(f"{stem}.txt")
                html = self._load(f"{stem}.html") if channel is Channel.EMAIL else None
                if text is not None or html is not None:
                    return self._load(f"{stem}.subject.txt"), text, html
        raise UnknownTemplate(template, channel)

    def render(
        self, template: str, channel: Channel, locale: str | None, data: Mapping[str, Any]
    ) -> Rendered:
        """Subject, plain body and (email only) HTML of `template` for `channel` in `locale`.

        An HTML-only email template gets its plain-text part derived from the HTML.
        """
        subject_t, text_t, html_t = self._pick(template, channel, locale)
        context = dict(data)
        try:
            subject = " ".join(subject_t.render(context).split()) if subject_t else None
            html = html_t.render(context) if html_t else None
            body = text_t.render(context).strip("\n") if text_t else html_to_text(html or "")
        except _MissingVariable as exc:
            raise MissingTemplateVariable(template, channel, exc.name) from None
        except JinjaTemplateError as exc:  # syntax errors, sandbox refusals
            raise TemplateError(f"template {template!r} ({channel.value}): {exc}") from exc
        return Rendered(subject=subject, body=body, html=html)


_BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head"):
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and not href.startswith("#"):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of an HTML email: blocks on lines, links spelled out."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
