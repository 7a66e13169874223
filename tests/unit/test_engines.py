"""The consensus-engine layer: one record per engine, what each family promises."""

import pytest

from testbed.engines import ENGINES, engine, engine_of
from testbed.errors import SpecError
from testbed.spec.network import NetworkSpec, engines_by_client


def test_bft_engines_are_final_and_clique_is_not():
    for name in ("qbft", "ibft", "ibft2"):
        e = engine(name)
        assert e.final and e.confirmations == 0 and e.max_reorg_depth == 0 and not e.repairs_forks
        assert e.genesis_delay_s(16) == 0
        assert "2f+1" in e.stall_hint
    clique = engine("clique")
    assert not clique.final and clique.confirmations >= 1 and clique.repairs_forks
    assert clique.genesis_delay_s(4) > 0 and clique.genesis_delay_s(16) > clique.genesis_delay_s(4)


def test_an_unknown_engine_names_the_known_ones():
    with pytest.raises(SpecError) as info:
        engine("pow")
    assert all(name in str(info.value) for name in ENGINES)


def test_every_client_engine_is_a_registered_engine_and_the_spec_follows_the_adapters():
    for client, engines in engines_by_client().items():
        assert engines and set(engines) <= set(ENGINES), client
        spec = NetworkSpec.model_validate({"name": "t", "client": client, "organizations": [{"name": "a"}]})
        assert spec.consensus.engine == engines[0]  # no engine given: the client's first
        assert engine_of(spec).name == engines[0]
    default = NetworkSpec.model_validate({"name": "t", "organizations": [{"name": "a"}]})
    assert (default.client, default.consensus.engine) == ("goquorum", "qbft")
