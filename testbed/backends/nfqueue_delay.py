"""A link delayer for kernels without tc netem: holds queued packets, then lets them go.

Run inside an organization's namespace, next to an iptables rule that sends every packet
the organization emits to NFQUEUE `--queue`. Each packet is released (NF_ACCEPT) after
`delay_ms` +/- `jitter_ms`, or dropped with probability `loss_pct`. It speaks nfnetlink
directly (no library) and asks only for packet ids, never packet contents.

    python -m testbed.backends.nfqueue_delay --queue 7 --delay-ms 200 [--jitter-ms 0] [--loss-pct 0] --tag NAME

On SIGTERM it releases every held packet and exits. "ready" on stdout means bound.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_DROP, NF_ACCEPT = 0, 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _message(msg_type: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def config_messages(queue: int, maxlen: int = 8192) -> list[bytes]:
    return [
        _message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, 0)),
                 NLM_F_REQUEST | NLM_F_ACK, 1),
        _message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
                 + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)), NLM_F_REQUEST | NLM_F_ACK, 2),
    ]


def verdict_message(queue: int, packet_id: int, verdict: int) -> bytes:
    return _message(NFQNL_MSG_VERDICT, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id)))


def packet_ids(data: bytes) -> list[int]:
    """Packet ids in a buffer of netlink messages; raises on a netlink error reply."""
    ids: list[int] = []
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if msg_type == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, offset + 16)
            if error:
                raise OSError(-error, os.strerror(-error))
        elif msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos = offset + 16 + 4
            while pos + 4 <= offset + length:
                alen, akind = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if akind & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, pos + 4)[0])
                pos += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return ids


def run(queue: int, delay_ms: float, jitter_ms: float, loss_pct: float) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    for msg in config_messages(queue):
        sock.send(msg)
        packet_ids(sock.recv(65536))  # the ack; raises if the kernel refused
    print("ready", flush=True)
    held: list[tuple[float, int, int]] = []  # (release time, seq, packet id)
    seq = 0
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stopping:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, pid = heapq.heappop(held)
            sock.send(verdict_message(queue, pid, NF_ACCEPT))
        wait = max(0.0, held[0][0] - now) if held else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], wait)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data = sock.recv(1 << 16)
        except OSError:  # ENOBUFS: the kernel dropped messages; keep going
            continue
        arrived = time.monotonic()
        for pid in packet_ids(data):
            if loss_pct and random.random() * 100 < loss_pct:
                sock.send(verdict_message(queue, pid, NF_DROP))
                continue
            hold = max(0.0, delay_ms + (random.uniform(-jitter_ms, jitter_ms) if jitter_ms else 0.0)) / 1000
            seq += 1
            heapq.heappush(held, (arrived + hold, seq, pid))
    for _, _, pid in held:
        sock.send(verdict_message(queue, pid, NF_ACCEPT))
    sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    parser.add_argument("--tag", default="", help="marker for the harness (which network and org)")
    args = parser.parse_args(argv)
    try:
        run(args.queue, args.delay_ms, args.jitter_ms, args.loss_pct)
    except OSError as exc:
        print(f"nfqueue_delay: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
