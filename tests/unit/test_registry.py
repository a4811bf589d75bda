import pytest

from warpgate import AttemptFailed, Plugin, PluginError, register
from warpgate import plugins as registry


def test_builtins_are_registered():
    assert "direct" in registry.available()


def test_register_and_create(clean_registry):
    @register
    class Knock(Plugin):
        name = "knock"

        async def attempt(self, ctx):
            raise AttemptFailed("nobody home")

    assert isinstance(registry.create("knock"), Knock)


def test_duplicate_name_rejected(clean_registry):
    class One(Plugin):
        name = "dup"

        async def attempt(self, ctx):
            raise AttemptFailed("x")

    class Two(Plugin):
        name = "dup"

        async def attempt(self, ctx):
            raise AttemptFailed("x")

    register(One)
    with pytest.raises(PluginError, match="taken"):
        register(Two)
    with pytest.raises(PluginError, match="taken"):
        register(type("Direct2", (Plugin,), {"name": "direct", "attempt": One.attempt}))


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({}, "name must match"),
        ({"name": "Bad Name"}, "name must match"),
        ({"name": "sync_attempt", "attempt": lambda self, ctx: None}, "async def"),
        ({"name": "no_attempt"}, "abstract"),
    ],
)
def test_malformed_plugins_rejected(clean_registry, attrs, match):
    if "attempt" not in attrs and attrs.get("name") not in (None, "Bad Name", "no_attempt"):
        raise AssertionError("test table error")
    if attrs.get("name") in (None, "Bad Name"):

        async def attempt(self, ctx):
            raise AttemptFailed("x")

        attrs = {**attrs, "attempt": attempt}
    cls = type("P", (Plugin,), attrs)
    with pytest.raises(PluginError, match=match):
        register(cls)


def test_wrong_signature_and_non_plugin(clean_registry):
    class Extra(Plugin):
        name = "extra"

        async def attempt(self, ctx, more):  # type: ignore[override]
            raise AttemptFailed("x")

    with pytest.raises(PluginError, match=r"\(self, ctx\)"):
        register(Extra)
    with pytest.raises(PluginError, match="not a subclass"):
        register(object)  # type: ignore[arg-type]


def test_unknown_plugin_name():
    with pytest.raises(PluginError, match="no plugin named 'nope'"):
        registry.create("nope")
