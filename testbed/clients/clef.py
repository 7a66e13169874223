"""clef as the external signer of a geth Clique node: nothing unlocked inside geth.

geth 1.13 seals Clique blocks with an account of its account manager. With `--signer`, that
account lives in clef, a separate process reached over its own IPC socket, and every request
geth makes is decided by clef's rules (`RULES_JS`, attested by hash):

- sign data only of the content type `application/x-clique-header` (block seals);
- list the accounts once per clef start: the one listing geth makes when it starts sealing
  (`--mine`, or `miner_start` for a member voted in). Every later listing is refused, so
  `eth_accounts` over HTTP answers `[]`;
- refuse every transaction, every other signature and every new account: `eth_sign`,
  `eth_signTransaction` and `eth_sendTransaction` over HTTP answer "request denied".

The node's process is a small shell script that sets clef up once (master seed, the keystore
password, the attestation; passwords from 0600 files on stdin), starts clef as its child with
a parent-death signal, waits until clef's rules are in force and its socket answers, then
execs geth under the same pid. So the backends see one process per node: when geth exits or is
killed, clef gets SIGINT and goes too, and a restart starts a fresh clef (whose listing budget
is reset by removing its rule storage). The node key is the sealing key, it holds no funds.
"""

from __future__ import annotations

import hashlib
import secrets
import shlex
from pathlib import Path

from testbed.clients.base import RenderedFile

# Every function answers explicitly: a request a rule leaves open would go to clef's UI, which
# reads stdin (at its end here, so refused anyway).
RULES_JS = """\
function ApproveListing(req) {
    if (storage.get("listed") == "") { storage.put("listed", "1"); return "Approve"; }
    return "Reject";
}
function ApproveSignData(req) {
    if (req.content_type == "application/x-clique-header") { return "Approve"; }
    return "Reject";
}
function ApproveTx(req) { return "Reject"; }
function ApproveNewAccount(req) { return "Reject"; }
function OnApprovedTx(res) {}
"""
RULES_SHA256 = hashlib.sha256(RULES_JS.encode()).hexdigest()
READY_LINE = "Rule engine configured"  # clef logs it once the attested rules are in force
START_TIMEOUT_S = 30


def clef_files() -> list[RenderedFile]:
    """The rules and clef's master password (random, 0600), beside the node's keystore."""
    return [RenderedFile("clef-rules.js", RULES_JS),
            RenderedFile("clef.master", secrets.token_hex(24), secret=True)]


def launch_script(clef: Path, node_dir: Path, signer_dir: Path, address: str, chain_id: int,
                  geth_argv: list[str]) -> list[str]:
    """`sh -c SCRIPT` that sets clef up once, starts it, waits for it and execs geth with `--signer`."""
    q = shlex.quote
    n, c, socket = node_dir, node_dir / "clef", signer_dir / "clef.ipc"
    clef_q = q(str(clef))
    two = lambda f: f"{{ cat {q(str(f))}; echo; cat {q(str(f))}; echo; }}"  # noqa: E731 (a password twice)
    script = f"""set -e
umask 077
if [ ! -f {q(str(c / 'masterseed.json'))} ]; then
  {two(n / 'clef.master')} | {clef_q} --suppress-bootwarn --lightkdf init --configdir {q(str(c))} >/dev/null
  {{ cat {q(str(n / 'signer.password'))}; echo; cat {q(str(n / 'signer.password'))}; echo; cat {q(str(n / 'clef.master'))}; echo; }} \\
    | {clef_q} --suppress-bootwarn setpw --configdir {q(str(c))} {q(address)} >/dev/null
  {{ cat {q(str(n / 'clef.master'))}; echo; }} | {clef_q} --suppress-bootwarn attest --configdir {q(str(c))} {RULES_SHA256} >/dev/null
fi
rm -f {q(str(c))}/*/jsstorage.json {q(str(socket))}
mkdir -p {q(str(signer_dir))}
setpriv --pdeathsig INT {clef_q} --suppress-bootwarn --nousb --lightkdf --loglevel 3 --configdir {q(str(c))} \\
  --keystore {q(str(n / 'data' / 'keystore'))} --chainid {int(chain_id)} --rules {q(str(n / 'clef-rules.js'))} \\
  --ipcpath {q(str(signer_dir))} --auditlog {q(str(n / 'clef-audit.log'))} --4bytedb-custom {q(str(c / '4byte-custom.json'))} \\
  < {q(str(n / 'clef.master'))} > {q(str(n / 'clef.log'))} 2>&1 &
i=0
until [ -S {q(str(socket))} ] && grep -q {q(READY_LINE)} {q(str(n / 'clef.log'))}; do
  i=$((i + 1))
  if [ "$i" -gt {START_TIMEOUT_S * 10} ] || ! kill -0 $! 2>/dev/null; then
    echo "clef did not start (rules not in force or no socket); see "{q(str(n / 'clef.log'))} >&2; exit 1
  fi
  sleep 0.1
done
exec "$@"
"""
    return ["sh", "-c", script, "geth-with-clef", *geth_argv, "--signer", str(socket)]
