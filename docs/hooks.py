"""mkdocs hook: the page of config keys gets its tables from the config dataclasses
(:func:`smoothstab.experiments.config.keys.keys_markdown`), the text ``smoothstab config``
prints."""

from __future__ import annotations

MARKER = "<!-- config keys -->"


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs passes all four
    if MARKER not in markdown:
        return markdown
    from smoothstab.experiments.config.keys import keys_markdown

    return markdown.replace(MARKER, keys_markdown())
