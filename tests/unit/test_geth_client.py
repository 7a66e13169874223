"""geth Clique: extraData layout, genesis contents, node files and command line (pure functions)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from testbed.clients import clef, get_client
from testbed.clients.base import NodePlan, NodePorts
from testbed.clients.geth import clique_extra_data
from testbed import toolchain
from testbed.keys import KeyPair, write_secret
from testbed.spec.network import NetworkSpec

SPEC = NetworkSpec.model_validate({
    "name": "t", "chain_id": 4242, "client": "geth", "consensus": {"engine": "clique", "block_period": 2, "epoch": 100, "gas_limit": 30_000_000},
    "organizations": [{"name": "a"}, {"name": "b"}],
})


def plan(name: str, index: int, role: str = "validator") -> NodePlan:
    return NodePlan(name=name, org=name.split("-")[0], role=role, index=index, host="127.0.0.1",
                    ports=NodePorts.for_index(21000, index), key=KeyPair.generate())


def test_extra_data_layout_sorts_signers():
    signers = ["0x" + "bb" * 20, "0x" + "AA" * 20]
    extra = clique_extra_data(signers)
    raw = bytes.fromhex(extra[2:])
    assert len(raw) == 32 + 2 * 20 + 65
    assert raw[:32] == bytes(32) and raw[-65:] == bytes(65)
    assert raw[32:52] == bytes.fromhex("aa" * 20) and raw[52:72] == bytes.fromhex("bb" * 20)


def test_genesis_contents():
    nodes = [plan("a-v1", 0), plan("b-v1", 1)]
    alloc = {"0x" + "11" * 20: 5 * 10**18}
    genesis = get_client("geth").genesis(SPEC, [n.address for n in nodes], alloc)
    json.dumps(genesis)  # serialisable
    config = genesis["config"]
    assert config["chainId"] == 4242
    assert config["clique"] == {"period": 2, "epoch": 100}
    assert config["londonBlock"] == 0 and config["berlinBlock"] == 0
    assert "shanghaiTime" not in config and "cancunTime" not in config
    assert "terminalTotalDifficultyPassed" not in config
    assert genesis["difficulty"] == "0x1"
    assert int(genesis["gasLimit"], 16) == 30_000_000
    assert genesis["alloc"] == {"11" * 20: {"balance": hex(5 * 10**18)}}
    for node in nodes:
        assert node.address.lower()[2:] in genesis["extraData"]


def test_validator_files_and_command(tmp_path):
    client = get_client("geth")
    me, peer = plan("a-v1", 0), plan("b-v1", 1)
    files = {f.path: f for f in client.node_files(SPEC, me, [peer])}
    assert peer.enode in files["config.toml"].content and me.enode not in files["config.toml"].content
    assert files["data/geth/nodekey"].secret and files["data/geth/nodekey"].content == me.key.private_key
    keystores = [p for p in files if p.startswith("data/keystore/")]
    assert len(keystores) == 1 and files[keystores[0]].secret
    assert json.loads(files[keystores[0]].content)["address"].lower() == me.address.lower()[2:]
    cmd = client.command(Path("/bin/geth"), SPEC, me, tmp_path, [peer])
    joined = " ".join(cmd)
    for flag in ("--nodiscover", "--syncmode full", "--miner.gasprice 1", "--mine", f"--miner.etherbase {me.address}",
                 "--http.addr 127.0.0.1", f"--http.port {me.ports.http}", f"--authrpc.port {me.ports.authrpc}",
                 f"--port {me.ports.p2p}", f"--metrics.port {me.ports.metrics}", "--ipcdisable",
                 "--http.api eth,net,web3,txpool", "--ws.api eth,net,web3,txpool"):
        assert flag in joined, flag
    assert "personal" not in joined
    assert cmd.count("--port") == 1


def test_member_node_does_not_seal(tmp_path):
    client = get_client("geth")
    member = plan("a-m1", 2, role="member")
    # a member carries its fund-less sealing key so it can be voted in later, but does not seal now
    assert [f for f in client.node_files(SPEC, member, []) if "keystore" in f.path]
    cmd = client.command(Path("/bin/geth"), SPEC, member, tmp_path, [])
    assert "--mine" not in cmd


def test_ports_do_not_overlap_between_nodes():
    ports = [p for i in range(40) for p in NodePorts.for_index(21000, i).all()]
    assert len(ports) == len(set(ports))


def test_keystore_iv_is_always_16_bytes_and_decrypts(monkeypatch):
    """eth-keyfile drops leading zero bytes of the IV; the adapter pads it back (geth needs 16)."""
    import os as _os

    from eth_account import Account
    from eth_keyfile import keyfile

    def zero_led(n):  # force an IV (and the salt) that starts with a zero byte
        return b"\x00" + _os.urandom(n - 1)

    monkeypatch.setattr(keyfile.Random, "get_random_bytes", zero_led)
    client = get_client("geth")
    me = plan("a-v1", 0)
    files = {f.path: f for f in client.node_files(SPEC, me, [])}
    keystore = json.loads(next(f for p, f in files.items() if p.startswith("data/keystore/")).content)
    assert len(keystore["crypto"]["cipherparams"]["iv"]) == 32
    password = files["signer.password"].content
    assert Account.decrypt(keystore, password).hex().removeprefix("0x") == me.key.private_key


def test_with_clef_nothing_is_unlocked_and_geth_is_execd_with_the_signer(tmp_path):
    client = get_client("geth")
    me, peer = plan("a-v1", 0), plan("b-v1", 1)
    files = {f.path: f for f in client.node_files(SPEC, me, [peer])}
    assert files["clef-rules.js"].content == clef.RULES_JS and files["clef.master"].secret
    cmd = client.command(Path("/bin/geth"), SPEC, me, tmp_path, [peer], sealer=Path("/opt/clef"), signer_dir=Path("/run/s"))
    assert cmd[:2] == ["sh", "-c"] and cmd[4] == "/bin/geth"
    assert not {"--unlock", "--password", "--allow-insecure-unlock"} & set(cmd)
    assert cmd[-2:] == ["--signer", "/run/s/clef.ipc"] and "--mine" in cmd
    script = cmd[2]
    assert 'exec "$@"' in script and "--pdeathsig INT" in script and clef.RULES_SHA256 in script
    without = client.command(Path("/bin/geth"), SPEC, me, tmp_path, [peer])  # docker, ansible: no clef there
    assert without[0] == "/bin/geth" and "--unlock" in without


# A stand-in for geth: asks clef's socket what geth would (list twice, sign text, sign a
# transaction) and prints the answers. Run by the launch script as `STAND_IN ADDRESS --signer SOCKET`.
STAND_IN = """
import json, socket, sys
address, path = sys.argv[1], sys.argv[-1]
tx = {"from": address, "to": address, "gas": "0x5208", "gasPrice": "0x1", "value": "0x0", "nonce": "0x0",
      "chainId": "0x1092"}
calls = [("account_list", []), ("account_list", []), ("account_signData", ["text/plain", address, "0x6869"]),
         ("account_signTransaction", [tx])]
answers = []
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect(path)
    reader = sock.makefile("r")
    for i, (method, params) in enumerate(calls):
        sock.sendall(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode() + b"\\n")
        answer = json.loads(reader.readline())
        answers.append(answer.get("result", answer.get("error", {}).get("message")))
print(json.dumps(answers))
"""


def _clef_processes(node_dir: Path) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "clef" in p.info["cmdline"][0] and str(node_dir) in " ".join(p.info["cmdline"])]


def test_clef_lists_the_sealing_account_once_then_refuses_every_other_request(tmp_path):
    """The launch script for real (clef set up, started, waited for), with a stand-in for geth."""
    me = plan("a-v1", 0)
    node_dir = tmp_path / "node"
    for f in get_client("geth").node_files(SPEC, me, []):
        path = node_dir / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_secret(path, f.content) if f.secret else path.write_text(f.content)
    stand_in = [sys.executable, "-c", STAND_IN, me.address]
    script = clef.launch_script(toolchain.ensure("clef"), node_dir, tmp_path / "s", me.address, SPEC.chain_id, stand_in)
    run = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-800:]
    listed, again, text, tx = json.loads(run.stdout)
    assert [a.lower() for a in listed] == [me.address.lower()]  # the one listing geth makes to seal
    assert again == text == tx == "request denied", (again, text, tx)
    deadline = time.monotonic() + 10
    while _clef_processes(node_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _clef_processes(node_dir), "clef outlived the process it signs for"
