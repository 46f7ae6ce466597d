#!/usr/bin/env python3
"""Durable order throughput and ack latency of a running mock_exchange.

Pipelined: sends N day orders that never cross (each gets exactly one
OrderAccepted, 88 bytes) as fast as TCP takes them on one connection and
times from the first send to the last answer byte. Closed loop: one order
at a time, the round trip's p50/p99. Python's own cost is in the closed-loop
figure (compare a run with and without --wal; the difference is the
durability wait). Usage:

    durable_orders.py HOST:PORT pipelined N [BASE]
    durable_orders.py HOST:PORT closed N [BASE]

Order names (cl_ord_id) start above BASE (default 0) per account: a second
run against the same exchange needs a BASE above the first's names.
"""
import socket
import struct
import sys
import threading
import time

OP_HELLO = 20001
OP_NEW_ORDER = 20100
OP_ACCEPTED = 20150
ACCEPTED_FRAME = 4 + 2 + 48 + 4 + 8 + 4 + 1 + 1 + 8 + 8
ACCOUNTS = 1000


def frame(opcode, payload):
    return struct.pack(">IH", 2 + len(payload), opcode) + payload


BASE = 0


def order(i, names):
    account = 1 + i % ACCOUNTS
    names[account] = names.get(account, BASE) + 1
    instrument = 1 + (i // ACCOUNTS) % 16
    buy = i % 2 == 0
    # Buys at 90..99, sells at 101..110: nothing ever crosses.
    price = 90 + i % 10 if buy else 101 + i % 10
    header = struct.pack(">QQQQQQ", names[account], 0, 1, 0, 0, 0)
    body = struct.pack(">IIBBqQ", account, instrument, 1 if buy else 2, 1, price, 1)
    return frame(OP_NEW_ORDER, header + body)


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(frame(OP_HELLO, struct.pack(">BH", 1, 1)))
    ack = b""
    while len(ack) < 9:
        ack += s.recv(9 - len(ack))
    return s


def check_all_accepted(data, n):
    at, seen = 0, 0
    while at < len(data):
        length, op = struct.unpack_from(">IH", data, at)
        if op != OP_ACCEPTED:
            raise SystemExit(f"answer {seen}: opcode {op}, not OrderAccepted")
        at += 4 + length
        seen += 1
    if seen != n:
        raise SystemExit(f"{seen} answers for {n} orders")


def pipelined(addr, n):
    names = {}
    wire = b"".join(order(i, names) for i in range(n))
    s = connect(addr)
    want = n * ACCEPTED_FRAME
    chunks = []
    got = [0, 0.0]

    def reader():
        while got[0] < want:
            b = s.recv(1 << 20)
            if not b:
                break
            chunks.append(b)
            got[0] += len(b)
        got[1] = time.perf_counter()

    t = threading.Thread(target=reader)
    t.start()
    start = time.perf_counter()
    s.sendall(wire)
    t.join()
    elapsed = got[1] - start
    check_all_accepted(b"".join(chunks), n)
    print(f"pipelined {n} orders in {elapsed:.3f} s: {n / elapsed:,.0f} durable orders/s")


def closed(addr, n):
    names = {}
    s = connect(addr)
    rtts = []
    for i in range(n):
        w = order(i, names)
        t0 = time.perf_counter()
        s.sendall(w)
        got = b""
        while len(got) < ACCEPTED_FRAME:
            got += s.recv(ACCEPTED_FRAME - len(got))
        rtts.append(time.perf_counter() - t0)
        check_all_accepted(got, 1)
    rtts.sort()
    p = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1e6
    print(f"closed loop {n} orders: rtt p50 {p(0.5):.0f} us p99 {p(0.99):.0f} us max {p(1.0):.0f} us")


if __name__ == "__main__":
    addr, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    BASE = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    {"pipelined": pipelined, "closed": closed}[mode](addr, n)
