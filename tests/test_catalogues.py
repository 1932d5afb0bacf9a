"""Message catalogues: every language has every text, with the same placeholders."""

from handlers.i18n import Catalog


def test_every_language_has_every_key_with_the_same_placeholders():
    catalog = Catalog.load()
    default = catalog.default
    for lang in catalog.languages:
        assert catalog.keys(lang) == catalog.keys(default), lang
        for key in catalog.keys(default):
            assert catalog.placeholders(lang, key) == catalog.placeholders(default, key), (lang, key)


def test_button_labels_fit_whatsapp_limits():
    """Reply-button titles are at most 20 characters, list rows at most 24 (Meta's limits)."""
    catalog = Catalog.load()
    buttons = (
        "skip",
        "pillar.yes",
        "pillar.other",
        "pick.unsure",
        "consent.agree",
        "confirm.send",
        "confirm.cancel",
        "identity.name",
        "identity.anon",
        "similar.mine",
        "erase.delete",
        "erase.anonymise",
        "erase.cancel",
        "area.more",
        "area.first",
        "language.name",
    )
    for lang in catalog.languages:
        for key in buttons:
            assert len(catalog.text(lang, key)) <= 20, (lang, key)
        for key in catalog.keys(lang):
            if key.startswith(("menu.", "pillars.")) and key not in ("menu.text", "menu.brief"):
                assert len(catalog.text(lang, key)) <= 24, (lang, key)


def test_a_new_language_is_a_new_file(tmp_path):
    """Javanese would need no code: drop jv.toml beside the others."""
    from importlib import resources

    for entry in resources.files("handlers.locales").iterdir():
        if entry.name.endswith(".toml"):
            (tmp_path / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "jv.toml").write_text('[language]\nname = "Basa Jawa"\n', encoding="utf-8")
    catalog = Catalog.load(folder=tmp_path)
    assert "jv" in catalog.languages
    assert catalog.text("jv", "language.name") == "Basa Jawa"
    assert catalog.text("jv", "skip") == "Lewati"  # missing keys fall back to the default
