"""Component contracts: registration checks each class against its kind's protocol; defaults come from it."""

import pytest

from unlearn_cli import contracts
from unlearn_cli.registry import ALL, Registry


def _registry(protocol):
    return Registry("method", "unlearn_cli.methods", protocol)


def test_a_complete_method_registers_and_inherits_the_optional_members():
    reg = _registry(contracts.Method)

    @reg.register("tiny_ga")
    class TinyGA(contracts.Method):
        """GA for the test."""

        def loss(self, model, batch, reference=None):
            return {"forget": 0.0}, {}

    method = TinyGA()
    assert TinyGA.registry_name == "tiny_ga"
    assert (method.needs_reference, method.needs_retain, method.needs_hooks) == (False, False, False)
    assert method.reference_splits == ("forget",)
    assert method.extra_splits(None, None) == {} and method.state_dict() == {}
    assert method.setup(None, None) is None and method.check_model(None) is None


def test_a_class_that_does_not_name_its_contract_is_refused():
    with pytest.raises(TypeError, match=r"method 'plain' .* must subclass unlearn_cli.contracts.Method"):
        @_registry(contracts.Method).register("plain")
        class Plain:
            def loss(self, model, batch, reference=None):
                return {}, {}


def test_a_missing_required_member_is_named():
    with pytest.raises(TypeError, match=r"does not implement Method.loss"):
        @_registry(contracts.Method).register("lossless")
        class Lossless(contracts.Method):
            pass


def test_a_wrong_signature_is_named():
    with pytest.raises(TypeError, match=r"loss must accept \(self, model, batch, reference\)"):
        @_registry(contracts.Method).register("odd")
        class Odd(contracts.Method):
            def loss(self, batch):
                return {}, {}


def test_a_flag_must_be_a_bool():
    with pytest.raises(TypeError, match=r"needs_retain must be a bool flag"):
        @_registry(contracts.Method).register("flaggy")
        class Flaggy(contracts.Method):
            needs_retain = "yes"

            def loss(self, model, batch, reference=None):
                return {}, {}


def test_a_setting_that_would_shadow_a_protocol_member_is_refused():
    """An attack setting called ``skip`` would set the protocol's "no stage at all" flag on the instance."""
    with pytest.raises(TypeError, match=r"constructor parameter 'skip' would shadow the protocol's flag Attack.skip"):
        @_registry(contracts.Attack).register("shadowy")
        class Shadowy(contracts.Attack):
            def __init__(self, skip=("lm_head",)):
                self.skip = skip

            def apply(self, ctx, model):
                return model, None


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_registered_component_fulfils_its_protocol(kind):
    registry = ALL[kind]
    assert registry.names(), f"no {kind} registered"
    for name in registry.names():
        cls = registry.get(name)
        contracts.check(cls, registry.protocol, kind, name)  # what registration checked, once more
        assert registry.protocol in cls.__mro__


def test_the_readme_method_example_registers_and_trains(monkeypatch):
    """The code block of README "Adding a component" is a working method (registered into a scratch registry)."""
    import re
    from pathlib import Path

    from _method_fixtures import Harness, mean_nll
    from unlearn_cli import registry

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("## Adding a component"):]
    code = "\n".join(line[3:] for line in re.search(r"```python\n(.*?)```", section, re.S).group(1).splitlines())
    scratch = Registry("method", "unlearn_cli.methods", contracts.Method)
    monkeypatch.setattr(registry, "METHODS", scratch)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    method = scratch.get("my_method")(retain_weight=1.0)
    assert method.needs_retain and not method.needs_reference
    h = Harness(method)
    forget = h.full("forget")
    start = mean_nll(h.model, forget)
    h.run(4)
    assert mean_nll(h.model, forget) > start  # gradient ascent on the forget set
