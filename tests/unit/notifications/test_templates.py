"""Templates: sandboxed Jinja2 per channel and locale, strict about missing variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.notifications.domain import (
    Channel,
    InvalidTemplateData,
    MissingTemplateVariable,
    TemplateError,
    UnknownTemplate,
    check_template_data,
)
from townhall.notifications.templates import TemplateRenderer, html_to_text

renderer = TemplateRenderer()


def test_welcome_email_has_subject_plain_body_and_html() -> None:
    rendered = renderer.render("welcome", Channel.EMAIL, "en", {"name": "Ada"})
    assert rendered.subject == "Welcome to Townhall, Ada!"
    assert rendered.body.startswith("Hello Ada,\n\nWelcome to Townhall!")
    assert rendered.html is not None and "<h1>Welcome to Townhall, Ada!</h1>" in rendered.html


def test_optional_variables_shape_the_message_when_given() -> None:
    rendered = renderer.render(
        "welcome", Channel.EMAIL, "en", {"name": "Ada", "url": "https://t.test/start"}
    )
    assert "Start here: https://t.test/start" in rendered.body
    assert 'href="https://t.test/start"' in (rendered.html or "")


def test_locale_is_used_and_falls_back_to_its_language_then_the_default() -> None:
    french = renderer.render("welcome", Channel.IN_APP, "fr", {"name": "Ada"})
    assert french.subject == "Bienvenue, Ada !"
    assert renderer.render("welcome", Channel.IN_APP, "fr-CA", {"name": "Ada"}) == french
    for locale in ("de", None, "../../etc", ""):
        assert renderer.render("welcome", Channel.IN_APP, locale, {"name": "Ada"}).subject == (
            "Welcome, Ada!"
        )


def test_missing_variable_is_an_error_naming_it_never_a_blank() -> None:
    with pytest.raises(MissingTemplateVariable) as caught:
        renderer.render("security", Channel.SMS, "en", {"name": "Ada", "event": "a new sign-in"})
    assert caught.value.variable == "occurred_at"
    assert caught.value.template == "security" and caught.value.channel is Channel.SMS
    assert "occurred_at" in str(caught.value)


def test_unknown_template_or_channel_without_a_file_is_named() -> None:
    with pytest.raises(UnknownTemplate) as caught:
        renderer.render("no-such-template", Channel.EMAIL, "en", {})
    assert caught.value.template == "no-such-template"
    with pytest.raises(UnknownTemplate):
        renderer.render("welcome", Channel.SMS, "en", {"name": "Ada"})
    with pytest.raises(UnknownTemplate):
        renderer.render("../welcome", Channel.EMAIL, "en", {"name": "Ada"})
    assert renderer.has("security", Channel.PUSH) and not renderer.has("welcome", Channel.PUSH)


def test_every_shipped_template_renders_in_english_and_french() -> None:
    data = {"name": "Ada", "event": "a new sign-in", "occurred_at": "2026-01-01 09:00 UTC"}
    shipped = {
        "welcome": (Channel.EMAIL, Channel.IN_APP),
        "security": (Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.IN_APP),
    }
    for template, channels in shipped.items():
        for channel in channels:
            english = renderer.render(template, channel, "en", data)
            french = renderer.render(template, channel, "fr", data)
            assert english.body and french.body and english.body != french.body


def test_html_is_escaped_but_plain_text_and_subject_are_not() -> None:
    rendered = renderer.render("welcome", Channel.EMAIL, "en", {"name": "<Ada & Bob>"})
    assert rendered.subject == "Welcome to Townhall, <Ada & Bob>!"
    assert "Hello <Ada & Bob>," in rendered.body
    assert "&lt;Ada &amp; Bob&gt;" in (rendered.html or "")


def test_override_directory_wins_and_html_only_email_gets_a_plain_text_part(
    tmp_path: Path,
) -> None:
    (tmp_path / "welcome").mkdir()
    (tmp_path / "welcome" / "email.en.subject.txt").write_text("Hi {{ name }}")
    (tmp_path / "welcome" / "email.en.html").write_text(
        '<p>Hello <b>{{ name }}</b>,</p><p>read <a href="https://t.test/rules">the rules</a></p>'
        "<style>p { color: red }</style>"
    )
    custom = TemplateRenderer(tmp_path)
    rendered = custom.render("welcome", Channel.EMAIL, "en", {"name": "Ada"})
    assert rendered.subject == "Hi Ada"
    assert rendered.body == "Hello Ada,\n\nread the rules (https://t.test/rules)"
    # what the override does not have still comes from the shipped templates
    assert custom.render("welcome", Channel.IN_APP, "en", {"name": "Ada"}).subject == (
        "Welcome, Ada!"
    )


def test_the_sandbox_refuses_reaching_into_python_internals(tmp_path: Path) -> None:
    (tmp_path / "evil").mkdir()
    escape = "{{ name.__class__.__mro__[1].__subclasses__() }}"
    (tmp_path / "evil" / "sms.en.txt").write_text(escape)
    with pytest.raises(TemplateError, match="unsafe"):
        TemplateRenderer(tmp_path).render("evil", Channel.SMS, "en", {"name": "Ada"})


def test_html_to_text_keeps_blocks_and_lists_readable() -> None:
    html = "<h1>Title</h1><ul><li>one</li><li>two</li></ul><p>a &amp; b</p>"
    assert html_to_text(html) == "Title\n\n- one\n\n- two\n\na & b"


def test_scalar_data_renders_as_text_never_as_a_python_repr() -> None:
    rendered = renderer.render(
        "security",
        Channel.EMAIL,
        "en",
        {"name": None, "event": True, "occurred_at": 2.5},
    )
    assert rendered.body.startswith("Hello ,\n")
    assert "We noticed true on your account at 2.5." in rendered.body
    for python in ("None", "True", "False"):
        assert python not in rendered.body
    falsy = renderer.render(
        "security", Channel.EMAIL, "en", {"name": 0, "event": False, "occurred_at": 10**20}
    )
    assert falsy.body.startswith("Hello 0,\n")
    assert "We noticed false on your account at 100000000000000000000." in falsy.body


def test_template_data_must_be_scalars_and_the_refusal_names_the_key() -> None:
    data = {"name": "Ada", "when": "noon", "n": 1, "x": 1.5, "flag": False, "none": None}
    assert check_template_data(data) == data
    for value in ({"x": 1}, [1], ()):
        with pytest.raises(InvalidTemplateData) as caught:
            check_template_data({"name": "Ada", "event": value})
        assert caught.value.field == "data.event"
        assert "'event'" in caught.value.detail
