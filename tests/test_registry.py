"""Conformance of every registered name: it resolves, and its contract holds."""

from __future__ import annotations

import pytest

from replaybench.errors import ConfigError, UnknownNameError
from replaybench.protocols import QUERY_METHOD as AGENT_METHOD
from replaybench.registry import AGENTS, STREAMS, load_entry_point
from replaybench.runner import agent_class_and_config

AGENT_NAMES = [n for n in AGENTS.names() if not n.endswith(":*")] + ["avalanche:Naive"]


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_every_agent_builds_its_default_config_and_has_its_methods(name):
    agent_cls, config = agent_class_and_config(name, {})
    assert agent_cls.kinds and set(agent_cls.kinds) <= set(AGENT_METHOD)
    for kind in agent_cls.kinds:
        assert callable(getattr(agent_cls, AGENT_METHOD[kind]))
    assert callable(agent_cls.learn)
    assert type(config).from_dict(config.to_dict()) == config  # configs round-trip


@pytest.mark.parametrize("spec", STREAMS.specs(), ids=lambda s: s.name)
def test_every_stream_entry_point_imports_and_accepts_its_table(spec):
    import inspect

    builder = load_entry_point(spec.entry_point)
    accepted = inspect.signature(builder).parameters
    assert all(key in accepted for key in spec.kwargs), sorted(set(spec.kwargs) - set(accepted))
    assert {"data_dir", "download"} <= set(accepted)


def test_a_misspelled_agent_option_is_refused_for_every_family():
    for name in ("naive", "er", "dqn-replay", "wave-lbc", "sigprop", "snn", "replay-gsemm"):
        with pytest.raises(ConfigError, match="Unknown option"):
            agent_class_and_config(name, {"lerning_rate": 1.0})


def test_registering_the_same_name_twice_differently_is_an_error():
    with pytest.raises(ValueError):
        AGENTS.register("naive", "replaybench.agents.er:ExperienceReplay")


def test_unknown_family_variant_needs_a_name():
    with pytest.raises(UnknownNameError):
        AGENTS.spec("avalanche:")
